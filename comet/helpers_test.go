package comet

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/protocol"
)

// ---------------------------------------------------------------- fake logic

// fakeLogic authenticates tokens of the form "uid:N" (the user id is N);
// token "bad" is refused. Op 4 is answered with Op 5 {"code":0}, op 99
// fails with an error, op 98 fails with a CloseError("kicked"), any other
// op is unknown_op.
type fakeLogic struct {
	mu          sync.Mutex
	connects    []ConnectRequest
	disconnects []string // keys
	discConnIDs []string // the ConnIDs of disconnects
	heartbeats  int
	hbConnIDs   []string      // the ConnIDs of heartbeats
	connectGate chan struct{} // when set, Connect waits for it
	joined      []string
	reports     []OnlineReport
	online      map[string]int32
	heartbeat   time.Duration
	joinGate    chan struct{} // when set, RoomJoined waits for it
	seq         int
}

type authBody struct {
	Token   string  `json:"token"`
	Key     string  `json:"key"`
	Room    string  `json:"room_id"`
	Accepts []int32 `json:"accepts"`
}

func (f *fakeLogic) Connect(ctx context.Context, req *ConnectRequest) (*ConnectReply, error) {
	var a authBody
	if err := json.Unmarshal(req.Body, &a); err != nil {
		return nil, fmt.Errorf("bad auth body: %w", err)
	}
	if a.Token == "" {
		a.Token = req.QueryToken
	}
	f.mu.Lock()
	f.connects = append(f.connects, *req)
	f.seq++
	seq := f.seq
	hb := f.heartbeat
	gate := f.connectGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if a.Token == "bad" {
		return nil, &CloseError{Code: protocol.CodeUnauthorized, Reason: "bad token"}
	}
	uid, err := strconv.ParseInt(strings.TrimPrefix(a.Token, "uid:"), 10, 64)
	if err != nil {
		return nil, errors.New("bad token")
	}
	if a.Key == "" {
		a.Key = "gen-" + strconv.Itoa(seq)
	}
	body, _ := json.Marshal(map[string]any{"user_id": uid, "key": a.Key})
	return &ConnectReply{UserID: uid, Key: a.Key, Room: a.Room, Accepts: a.Accepts, Heartbeat: hb, Body: body}, nil
}

func (f *fakeLogic) Disconnect(ctx context.Context, server string, userID int64, key, connID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnects = append(f.disconnects, key)
	f.discConnIDs = append(f.discConnIDs, connID)
	return nil
}

func (f *fakeLogic) Heartbeat(ctx context.Context, server string, userID int64, key, connID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats++
	f.hbConnIDs = append(f.hbConnIDs, connID)
	return nil
}

func (f *fakeLogic) RoomJoined(ctx context.Context, server, room string) error {
	f.mu.Lock()
	gate := f.joinGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joined = append(f.joined, room)
	return nil
}

func (f *fakeLogic) RenewOnline(ctx context.Context, r *OnlineReport) (map[string]int32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, *r)
	return f.online, nil
}

func (f *fakeLogic) Receive(ctx context.Context, req *ReceiveRequest) (*protocol.Packet, error) {
	switch req.Packet.Op {
	case protocol.OpSendMsg:
		return &protocol.Packet{Op: protocol.OpSendMsgReply, Body: []byte(`{"code":0}`)}, nil
	case 99:
		return nil, errors.New("boom")
	case 98:
		return nil, &CloseError{Code: protocol.CodeKicked, Reason: "kicked by admin"}
	case protocol.OpTyping:
		return nil, nil
	}
	return &protocol.Packet{Op: req.Packet.Op, Body: []byte(`{"code":"unknown_op","message":"unknown op"}`)}, nil
}

func (f *fakeLogic) joinedRooms() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.joined...)
}

func (f *fakeLogic) disconnected() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.disconnects...)
}

// ---------------------------------------------------------------- server

func testConfig() Config {
	return Config{
		Node:        "comet-test",
		TCPAddr:     "127.0.0.1:0",
		WSAddr:      "127.0.0.1:0",
		DrainWindow: -1,
		DrainAddrs:  []string{"10.0.0.2:3101"},
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startServer(t testing.TB, cfg Config, logic Logic) *Server {
	t.Helper()
	s, err := New(cfg, logic, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- raw client

// client is a hand-written protocol client: it frames goim v2 packets by
// hand, over TCP or a minimal WebSocket implementation.
type client struct {
	t   testing.TB
	c   net.Conn
	br  *bufio.Reader
	ws  bool
	seq int32
}

func dialTCP(t testing.TB, s *Server) *client {
	t.Helper()
	c, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func dialWS(t testing.TB, s *Server, uri string) *client {
	t.Helper()
	cl, status := dialWSStatus(t, s, uri)
	if status != 101 {
		t.Fatalf("upgrade status %d", status)
	}
	return cl
}

func dialWSStatus(t testing.TB, s *Server, uri string) (*client, int) {
	t.Helper()
	c, err := net.Dial("tcp", s.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var k [16]byte
	_, _ = rand.Read(k[:])
	req := "GET " + uri + " HTTP/1.1\r\nHost: " + s.WSAddr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(k[:]) + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("bad status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return &client{t: t, c: c, br: br, ws: true}, status
		}
		if l == "\r\n" {
			break
		}
	}
	return &client{t: t, c: c, br: br, ws: true}, status
}

// wsFrameBytes builds a masked client frame.
func wsFrameBytes(op byte, fin bool, payload []byte) []byte {
	b := []byte{op, 0x80}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b[1] |= byte(n)
	case n <= 0xffff:
		b[1] |= 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] |= 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// packetBytes returns the bytes of p on this client's transport.
func (c *client) packetBytes(p protocol.Packet) []byte {
	b := protocol.Encode(p)
	if c.ws {
		return wsFrameBytes(0x2, true, b)
	}
	return b
}

func (c *client) write(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) send(op int32, body []byte) int32 {
	c.t.Helper()
	c.seq++
	c.write(c.packetBytes(protocol.Packet{Ver: 1, Op: op, Seq: c.seq, Body: body}))
	return c.seq
}

var errWSClose = errors.New("websocket close frame")

// readFrame reads one server WebSocket frame (unmasked).
func (c *client) readFrame() (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err = io.ReadFull(c.br, e[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err = io.ReadFull(c.br, e[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 {
		return 0, nil, errors.New("server sent a fragmented frame")
	}
	return h[0] & 0x0f, payload, nil
}

// read reads the next packet (WebSocket: the next data frame, which must
// hold exactly one packet).
func (c *client) read() (protocol.Packet, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if !c.ws {
		var h [protocol.HeaderLen]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return protocol.Packet{}, err
		}
		hd, err := protocol.ParseHeader(h[:], 0)
		if err != nil {
			return protocol.Packet{}, err
		}
		body := make([]byte, hd.BodyLen())
		if _, err := io.ReadFull(c.br, body); err != nil {
			return protocol.Packet{}, err
		}
		return protocol.Packet{Ver: hd.Ver, Op: hd.Op, Seq: hd.Seq, Body: body}, nil
	}
	for {
		op, payload, err := c.readFrame()
		if err != nil {
			return protocol.Packet{}, err
		}
		switch op {
		case 0x8:
			return protocol.Packet{}, errWSClose
		case 0x9, 0xa:
			continue
		}
		p, n, err := protocol.Decode(payload, 0)
		if err != nil {
			return p, err
		}
		if n != len(payload) {
			return p, fmt.Errorf("frame holds %d bytes after its packet", len(payload)-n)
		}
		return p, nil
	}
}

func (c *client) expect(op int32) protocol.Packet {
	c.t.Helper()
	p, err := c.read()
	if err != nil {
		c.t.Fatalf("read (want op %d): %v", op, err)
	}
	if p.Op != op {
		c.t.Fatalf("got op %d body %q, want op %d", p.Op, p.Body, op)
	}
	return p
}

func (c *client) auth(token, key, room string, accepts ...int32) protocol.Packet {
	c.t.Helper()
	body, _ := json.Marshal(authBody{Token: token, Key: key, Room: room, Accepts: accepts})
	seq := c.send(protocol.OpAuth, body)
	p := c.expect(protocol.OpAuthReply)
	if p.Seq != seq || p.Ver != 1 {
		c.t.Fatalf("auth reply seq %d ver %d, want seq %d ver 1", p.Seq, p.Ver, seq)
	}
	return p
}

type op6 struct {
	Code             string   `json:"code"`
	Reason           string   `json:"reason"`
	ReconnectAfterMs *int64   `json:"reconnect_after_ms"`
	Addrs            []string `json:"addrs"`
}

// expectDisconnect reads up to Op 6 (skipping other packets), checks its
// code, and that the connection then ends.
func (c *client) expectDisconnect(code string) op6 {
	c.t.Helper()
	for {
		p, err := c.read()
		if err != nil {
			c.t.Fatalf("read (want op 6 %s): %v", code, err)
		}
		if p.Op != protocol.OpDisconnect {
			continue
		}
		var d op6
		if err := json.Unmarshal(p.Body, &d); err != nil {
			c.t.Fatalf("op 6 body %q: %v", p.Body, err)
		}
		if d.Code != code {
			c.t.Fatalf("op 6 code %q (%s), want %q", d.Code, d.Reason, code)
		}
		c.expectEOF()
		return d
	}
}

// expectEOF checks that the server closes the connection (a WebSocket close
// frame counts).
func (c *client) expectEOF() {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if c.ws {
			op, _, err := c.readFrame()
			if err == nil && op != 0x8 {
				continue
			}
			if err == nil {
				// After the close frame the TCP connection ends too.
				if _, err = c.br.ReadByte(); err == nil {
					c.t.Fatal("data after the close frame")
				}
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatal("connection not closed")
			}
			return
		}
		_, err := c.br.ReadByte()
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("connection not closed")
		}
		return
	}
}

// heartbeat sends Op 2 and returns the room count of the Op 3 reply.
func (c *client) heartbeat() int32 {
	c.t.Helper()
	seq := c.send(protocol.OpHeartbeat, nil)
	p := c.expect(protocol.OpHeartbeatReply)
	if p.Seq != seq || len(p.Body) != 4 {
		c.t.Fatalf("heartbeat reply seq %d body %x", p.Seq, p.Body)
	}
	return int32(binary.BigEndian.Uint32(p.Body))
}

var transports = []string{transportTCP, transportWS}

func dial(t testing.TB, s *Server, tr string) *client {
	t.Helper()
	if tr == transportWS {
		return dialWS(t, s, "/sub")
	}
	return dialTCP(t, s)
}

// checkServes proves the server still serves a fresh client.
func checkServes(t testing.TB, s *Server) {
	t.Helper()
	for _, tr := range transports {
		c := dial(t, s, tr)
		c.auth("uid:500", "", "")
		c.heartbeat()
		c.c.Close()
	}
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

package client

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

// fakeServer is a minimal comet speaking the wire protocol on 127.0.0.1:0,
// over TCP or WebSocket, with hooks for the tests.
type fakeServer struct {
	t    testing.TB
	ln   net.Listener
	ws   bool
	addr string

	heartbeatS int
	online     int32
	// handle, if set, sees every packet after auth first; true means handled.
	handle func(fc *fakeConn, p protocol.Packet) bool
	// authHook, if set, decides the answer to Op 7: nil sends the default
	// AuthReply, a non-nil error string refuses with that Op 6 code.
	authHook func(n int, req authReq, query string) string
	// batchAuth sends AuthReply inside an Op 9 batch followed by a push.
	batchAuth bool
	// ignoreHeartbeatConn: heartbeats on the connection with this index
	// (0-based, counting authenticated connections) get no reply; -1: none.
	ignoreHeartbeatConn int

	keySeq atomic.Int64
	pongs  atomic.Int64

	mu      sync.Mutex
	auths   []authRecord
	conns   []*fakeConn
	ops     map[int32]int
	typing  [][]byte
	closing bool
	wg      sync.WaitGroup
}

type authRecord struct {
	Req   authReq
	Query string
}

type fakeConn struct {
	s     *fakeServer
	nc    net.Conn
	br    *bufio.Reader
	index int
	wmu   sync.Mutex
}

func newFakeServer(t testing.TB, transport string, opts ...func(*fakeServer)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{
		t:                   t,
		ln:                  ln,
		ws:                  transport == TransportWS,
		addr:                ln.Addr().String(),
		heartbeatS:          30,
		online:              7,
		ops:                 map[int32]int{},
		ignoreHeartbeatConn: -1,
	}
	for _, o := range opts {
		o(s)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.Close)
	return s
}

func (s *fakeServer) Close() {
	s.mu.Lock()
	s.closing = true
	conns := s.conns
	s.mu.Unlock()
	_ = s.ln.Close()
	for _, fc := range conns {
		_ = fc.nc.Close()
	}
	s.wg.Wait()
}

func (s *fakeServer) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(nc)
	}
}

func (s *fakeServer) serve(nc net.Conn) {
	defer s.wg.Done()
	defer nc.Close()
	fc := &fakeConn{s: s, nc: nc, br: bufio.NewReader(nc), index: -1}
	s.mu.Lock()
	s.conns = append(s.conns, fc)
	s.mu.Unlock()
	var query string
	if s.ws {
		u := ws.Upgrader{OnRequest: func(uri []byte) error {
			if u, err := url.ParseRequestURI(string(uri)); err == nil {
				query = u.Query().Get("token")
				if u.Path != "/sub" {
					return fmt.Errorf("bad path %q", u.Path)
				}
			}
			return nil
		}}
		if _, err := u.Upgrade(struct {
			io.Reader
			io.Writer
		}{fc.br, nc}); err != nil {
			return
		}
	}
	p, err := fc.readPacket()
	if err != nil || p.Op != protocol.OpAuth {
		return
	}
	var req authReq
	if err := json.Unmarshal(p.Body, &req); err != nil {
		return
	}
	s.mu.Lock()
	n := len(s.auths)
	s.mu.Unlock()
	code := ""
	if s.authHook != nil {
		code = s.authHook(n, req, query)
	} else if tok := req.Token + query; tok != "good" {
		code = protocol.CodeUnauthorized
	}
	if code != "" {
		_ = fc.disconnect(code, "refused", 0, nil)
		return
	}
	key := req.Key
	if key == "" {
		key = fmt.Sprintf("srv-key-%d", s.keySeq.Add(1))
	}
	s.mu.Lock()
	fc.index = len(s.auths)
	s.auths = append(s.auths, authRecord{Req: req, Query: query})
	s.mu.Unlock()
	reply := mustJSON(map[string]any{"user_id": 42, "key": key, "heartbeat_s": s.heartbeatS, "server_time_ms": 1732800000000, "node": "fake-1"})
	ar := protocol.Packet{Ver: p.Ver, Op: protocol.OpAuthReply, Seq: p.Seq, Body: reply}
	if s.batchAuth {
		err = fc.writeBatch(ar, protocol.Packet{Ver: 1, Op: 1001, Body: []byte("early")})
	} else {
		err = fc.write(ar)
	}
	if err != nil {
		return
	}
	for {
		p, err := fc.readPacket()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.ops[p.Op]++
		s.mu.Unlock()
		if s.handle != nil && s.handle(fc, p) {
			continue
		}
		if err := fc.defaultHandle(p); err != nil {
			return
		}
	}
}

func (fc *fakeConn) defaultHandle(p protocol.Packet) error {
	s := fc.s
	reply := func(op int32, body []byte) error {
		return fc.write(protocol.Packet{Ver: p.Ver, Op: op, Seq: p.Seq, Body: body})
	}
	switch p.Op {
	case protocol.OpHeartbeat:
		if fc.index == s.ignoreHeartbeatConn {
			return nil
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(s.online))
		return reply(protocol.OpHeartbeatReply, b[:])
	case protocol.OpChangeRoom, protocol.OpSub, protocol.OpUnsub:
		return reply(p.Op+1, p.Body)
	case protocol.OpSendMsg:
		var req SendReq
		if err := json.Unmarshal(p.Body, &req); err != nil {
			return reply(protocol.OpSendMsgReply, []byte(`{"code":"bad_request","message":"bad json"}`))
		}
		if req.ToUser == 13 {
			return reply(protocol.OpSendMsgReply, []byte(`{"code":"not_friends","message":"you are not friends"}`))
		}
		return reply(protocol.OpSendMsgReply, mustJSON(map[string]any{
			"code": 0, "client_msg_id": req.ClientMsgID, "msg_id": "1873000000000000001",
			"conversation_id": fmt.Sprintf("p_%d_%d", min(42, req.ToUser), max(42, req.ToUser)), "seq": 12, "created_at_ms": 1732800000001,
		}))
	case protocol.OpSync:
		return reply(protocol.OpSyncReply, []byte(`{"code":0,"messages":[{"msg_id":"1873000000000000001","conversation_id":"p_7_42","seq":11,"sender_id":7,"type":1,"content":{"text":"hi"},"client_msg_id":"c1","status":0,"created_at_ms":5}],"has_more":true}`))
	case protocol.OpAck:
		if strings.Contains(string(p.Body), `"seq":-1`) {
			return reply(protocol.OpAckReply, []byte(`{"code":"bad_request","message":"bad seq"}`))
		}
		return reply(protocol.OpAckReply, []byte(`{"code":0}`))
	case protocol.OpTyping:
		s.mu.Lock()
		s.typing = append(s.typing, append([]byte(nil), p.Body...))
		s.mu.Unlock()
		return nil
	case 1000: // echo service
		return reply(1001, p.Body)
	}
	return reply(p.Op, []byte(`{"code":"unknown_op","message":"unknown op"}`))
}

// readPacket reads one client packet (on WebSocket: one masked frame, which
// must hold exactly one packet; pongs are counted).
func (fc *fakeConn) readPacket() (protocol.Packet, error) {
	if !fc.s.ws {
		var hdr [protocol.HeaderLen]byte
		if _, err := io.ReadFull(fc.br, hdr[:]); err != nil {
			return protocol.Packet{}, err
		}
		h, err := protocol.ParseHeader(hdr[:], protocol.DefaultMaxBody)
		if err != nil {
			return protocol.Packet{}, err
		}
		body := make([]byte, h.BodyLen())
		if _, err := io.ReadFull(fc.br, body); err != nil {
			return protocol.Packet{}, err
		}
		return protocol.Packet{Ver: h.Ver, Op: h.Op, Seq: h.Seq, Body: body}, nil
	}
	for {
		h, err := ws.ReadHeader(fc.br)
		if err != nil {
			return protocol.Packet{}, err
		}
		if !h.Masked || h.Length > 1<<20 {
			return protocol.Packet{}, errors.New("fake: unmasked or huge client frame")
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(fc.br, payload); err != nil {
			return protocol.Packet{}, err
		}
		ws.Cipher(payload, h.Mask, 0)
		switch h.OpCode {
		case ws.OpPong:
			fc.s.pongs.Add(1)
			continue
		case ws.OpClose:
			return protocol.Packet{}, io.EOF
		case ws.OpBinary:
		default:
			return protocol.Packet{}, fmt.Errorf("fake: opcode %d", h.OpCode)
		}
		p, n, err := protocol.Decode(payload, protocol.DefaultMaxBody)
		if err != nil {
			return protocol.Packet{}, err
		}
		if n != len(payload) {
			return protocol.Packet{}, fmt.Errorf("fake: %d bytes after the packet in one frame", len(payload)-n)
		}
		return p, nil
	}
}

// writeRaw writes b in one write (TCP) or as one binary frame (WebSocket).
func (fc *fakeConn) writeRaw(b []byte) error {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	if fc.s.ws {
		return ws.WriteFrame(fc.nc, ws.NewBinaryFrame(b))
	}
	_, err := fc.nc.Write(b)
	return err
}

// writeFrame writes a WebSocket frame (WebSocket only).
func (fc *fakeConn) writeFrame(f ws.Frame) error {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	return ws.WriteFrame(fc.nc, f)
}

// write sends packets: back to back in one write on TCP, one frame each on
// WebSocket.
func (fc *fakeConn) write(ps ...protocol.Packet) error {
	if fc.s.ws {
		for _, p := range ps {
			if err := fc.writeRaw(protocol.Encode(p)); err != nil {
				return err
			}
		}
		return nil
	}
	var b []byte
	for _, p := range ps {
		b = protocol.Append(b, p)
	}
	return fc.writeRaw(b)
}

// writeBatch sends the packets inside one Op 9 packet.
func (fc *fakeConn) writeBatch(ps ...protocol.Packet) error {
	var enc [][]byte
	for _, p := range ps {
		enc = append(enc, protocol.Encode(p))
	}
	return fc.writeRaw(protocol.AppendBatch(nil, enc...))
}

func (fc *fakeConn) disconnect(code, reason string, afterMs int, addrs []string) error {
	body := mustJSON(map[string]any{"code": code, "reason": reason, "reconnect_after_ms": afterMs, "addrs": addrs})
	err := fc.write(protocol.Packet{Ver: 1, Op: protocol.OpDisconnect, Body: body})
	_ = fc.nc.Close()
	return err
}

func (s *fakeServer) authCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.auths)
}

func (s *fakeServer) auth(i int) authRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths[i]
}

func (s *fakeServer) opCount(op int32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops[op]
}

// authedConn returns the i-th authenticated connection, waiting for it.
func (s *fakeServer) authedConn(t testing.TB, i int) *fakeConn {
	t.Helper()
	var fc *fakeConn
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			if c.index == i {
				fc = c
				return true
			}
		}
		return false
	}, "authenticated connection %d", i)
	return fc
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkGoroutines waits until no more goroutines run than base.
func checkGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(2 * time.Millisecond)
	}
}

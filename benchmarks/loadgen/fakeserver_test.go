package loadgen

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bytedance/sonic"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/protocol"
)

const testSecret = "0123456789abcdef0123456789abcdef-test"

// fakeComet speaks just enough of PROTOCOL.md (auth, heartbeat, pushes,
// Op 6) over TCP or WebSocket to test the load generator without the real
// server.
type fakeComet struct {
	t     testing.TB
	ln    net.Listener
	ws    bool
	iss   *auth.Issuer
	hbSec int
	// refuse: this many next handshakes are answered with Op 6 unavailable.
	refuse atomic.Int32

	mu    sync.Mutex
	conns map[*fakeConn]struct{}
	rooms map[*fakeConn]string
	// authed lists the users authenticated, in order, and when.
	authed   []int64
	authedAt []time.Time
	wg       sync.WaitGroup
}

type fakeConn struct {
	nc  net.Conn
	wmu sync.Mutex
	ws  bool
}

func (c *fakeConn) write(pkt []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ws {
		return wsutil.WriteServerBinary(c.nc, pkt)
	}
	_, err := c.nc.Write(pkt)
	return err
}

func newFakeComet(t testing.TB, overWS bool) *fakeComet {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := auth.NewIssuer([]byte(testSecret), "goim")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeComet{t: t, ln: ln, ws: overWS, iss: iss, hbSec: 1, conns: map[*fakeConn]struct{}{}, rooms: map[*fakeConn]string{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(nc) }()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *fakeComet) addr() string { return s.ln.Addr().String() }

// users returns the users authenticated so far, sorted, and how many
// connections are open.
func (s *fakeComet) users() ([]int64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(slices.Values(s.authed)), len(s.conns)
}

func (s *fakeComet) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// readPacket reads one client packet.
func (s *fakeComet) readPacket(c *fakeConn, br *bufio.Reader) (protocol.Packet, error) {
	if c.ws {
		b, _, err := wsutil.ReadClientData(c.nc)
		if err != nil {
			return protocol.Packet{}, err
		}
		p, _, err := protocol.Decode(b, 0)
		return p, err
	}
	hdr := make([]byte, protocol.HeaderLen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return protocol.Packet{}, err
	}
	h, err := protocol.ParseHeader(hdr, protocol.DefaultMaxBody)
	if err != nil {
		return protocol.Packet{}, err
	}
	body := make([]byte, h.BodyLen())
	if _, err := io.ReadFull(br, body); err != nil {
		return protocol.Packet{}, err
	}
	return protocol.Packet{Ver: h.Ver, Op: h.Op, Seq: h.Seq, Body: body}, nil
}

func (s *fakeComet) serve(nc net.Conn) {
	defer nc.Close()
	c := &fakeConn{nc: nc, ws: s.ws}
	if s.ws {
		if _, err := ws.Upgrade(nc); err != nil {
			return
		}
	}
	br := bufio.NewReader(nc)
	p, err := s.readPacket(c, br)
	if err != nil || p.Op != protocol.OpAuth {
		return
	}
	var req authReq
	if err := sonic.Unmarshal(p.Body, &req); err != nil {
		return
	}
	claims, err := s.iss.Verify(req.Token)
	if err == nil && s.refuse.Add(-1) >= 0 {
		body, _ := sonic.Marshal(disconnect{Code: protocol.CodeUnavailable})
		_ = c.write(protocol.Encode(protocol.Packet{Ver: p.Ver, Op: protocol.OpDisconnect, Body: body}))
		return
	}
	if err != nil {
		body, _ := sonic.Marshal(disconnect{Code: protocol.CodeUnauthorized})
		_ = c.write(protocol.Encode(protocol.Packet{Ver: p.Ver, Op: protocol.OpDisconnect, Body: body}))
		return
	}
	reply, _ := sonic.Marshal(map[string]any{"user_id": claims.UserID, "key": req.Key, "heartbeat_s": s.hbSec})
	if err := c.write(protocol.Encode(protocol.Packet{Ver: p.Ver, Op: protocol.OpAuthReply, Seq: p.Seq, Body: reply})); err != nil {
		return
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.rooms[c] = req.RoomID
	s.authed = append(s.authed, claims.UserID)
	s.authedAt = append(s.authedAt, time.Now())
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	for {
		p, err := s.readPacket(c, br)
		if err != nil {
			return
		}
		if p.Op == protocol.OpHeartbeat {
			var online [4]byte
			binary.BigEndian.PutUint32(online[:], 1)
			if c.write(protocol.Encode(protocol.Packet{Ver: p.Ver, Op: protocol.OpHeartbeatReply, Seq: p.Seq, Body: online[:]})) != nil {
				return
			}
		}
	}
}

// push sends bodies to every connection in room: as separate packets, or as
// one Op 9 batch.
func (s *fakeComet) push(room string, op int32, batch bool, bodies ...[]byte) int {
	var pkts [][]byte
	for _, b := range bodies {
		pkts = append(pkts, protocol.Encode(protocol.Packet{Ver: protocol.Version, Op: op, Body: b}))
	}
	var frames [][]byte
	if batch {
		frames = [][]byte{protocol.AppendBatch(nil, pkts...)}
	} else {
		frames = pkts
	}
	s.mu.Lock()
	var targets []*fakeConn
	for c := range s.conns {
		if s.rooms[c] == room {
			targets = append(targets, c)
		}
	}
	s.mu.Unlock()
	for _, c := range targets {
		for _, f := range frames {
			if err := c.write(f); err != nil && !strings.Contains(err.Error(), "closed") {
				s.t.Errorf("push write: %v", err)
			}
		}
	}
	return len(targets)
}

// disconnectAll sends Op 6 with code to every connection and closes it.
func (s *fakeComet) disconnectAll(code string) {
	body, _ := sonic.Marshal(disconnect{Code: code, Reason: "test"})
	pkt := protocol.Encode(protocol.Packet{Ver: protocol.Version, Op: protocol.OpDisconnect, Body: body})
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.write(pkt)
		c.nc.Close()
	}
}

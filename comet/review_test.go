package comet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goimdev/goim/protocol"
)

// startServerWith is startServer with a chance to set test hooks between
// New and Start.
func startServerWith(t testing.TB, cfg Config, logic Logic, setup func(*Server)) *Server {
	t.Helper()
	s, err := New(cfg, logic, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	setup(s)
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

func (f *fakeLogic) connIDs() (connects, disconnects, heartbeats []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.connects {
		connects = append(connects, c.ConnID)
	}
	return connects, slices.Clone(f.discConnIDs), slices.Clone(f.hbConnIDs)
}

// TestConnIDs: every connection gets its own ConnID in Connect, and its
// Disconnect carries it, the replaced connection's included, so that logic
// can tell an old connection's Disconnect from the newer one's session.
func TestConnIDs(t *testing.T) {
	logic := &fakeLogic{}
	s := startServer(t, testConfig(), logic)
	a := dialTCP(t, s)
	a.auth("uid:1", "k", "")
	b := dialWS(t, s, "/sub")
	b.auth("uid:1", "k", "")
	a.expectDisconnect(protocol.CodeReplaced)
	waitFor(t, "the replaced connection's Disconnect", func() bool {
		_, d, _ := logic.connIDs()
		return len(d) == 1
	})
	conns, discs, _ := logic.connIDs()
	if len(conns) != 2 || conns[0] == "" || conns[0] == conns[1] || !strings.HasPrefix(conns[0], s.Node()+"-") {
		t.Fatalf("ConnIDs %q: want two distinct ids prefixed with the node", conns)
	}
	if discs[0] != conns[0] {
		t.Fatalf("the replaced connection disconnected as %q, want its own ConnID %q", discs[0], conns[0])
	}
	b.c.Close()
	waitFor(t, "the second Disconnect", func() bool {
		_, d, _ := logic.connIDs()
		return len(d) == 2
	})
	if _, discs, _ = logic.connIDs(); discs[1] != conns[1] {
		t.Fatalf("Disconnect ConnID %q, want %q", discs[1], conns[1])
	}
}

// TestReplaceByClosingNewcomer: a newcomer with the key of a live
// connection that starts closing just before it would take the key must
// leave the live connection registered (reachable by PushKeys).
func TestReplaceByClosingNewcomer(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var armed atomic.Bool
			s := startServerWith(t, testConfig(), &fakeLogic{}, func(s *Server) {
				s.hookRegister = func(c *conn) {
					if armed.Load() {
						c.closeWith(protocol.CodeKicked, "closed during auth", nil)
					}
				}
			})
			old := dial(t, s, tr)
			old.auth("uid:1", "k", "")
			armed.Store(true)
			nc := dial(t, s, tr)
			body, _ := json.Marshal(authBody{Token: "uid:1", Key: "k"})
			nc.send(protocol.OpAuth, body)
			nc.expectDisconnect(protocol.CodeKicked)
			if err := s.PushKeys(context.Background(), []string{"k"}, protocol.Packet{Ver: 1, Op: protocol.OpEvent, Body: []byte("still here")}); err != nil {
				t.Fatal(err)
			}
			if p := old.expect(protocol.OpEvent); string(p.Body) != "still here" {
				t.Fatalf("push body %q", p.Body)
			}
			if n := s.Stats().Conns; n != 1 {
				t.Fatalf("authenticated connections %d, want 1", n)
			}
		})
	}
}

// TestLogicHeartbeatOnAnyTraffic: Logic.Heartbeat is called at most once
// per heartbeat interval, on any packet or WebSocket frame, not only Op 2.
// The clock is a fake one advanced by the test.
func TestLogicHeartbeatOnAnyTraffic(t *testing.T) {
	const interval = time.Minute
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
			logic := &fakeLogic{heartbeat: interval}
			s := startServerWith(t, testConfig(), logic, func(s *Server) { s.wallNow = clock.Load })
			c := dial(t, s, tr)
			c.auth("uid:1", "k", "")
			count := func() int {
				_, _, hb := logic.connIDs()
				return len(hb)
			}
			sendMsg := func() {
				t.Helper()
				c.send(protocol.OpSendMsg, []byte(`{}`))
				c.expect(protocol.OpSendMsgReply) // Heartbeat runs before the packet is handled
			}
			// Within the interval: neither Op 2 nor Op 4 calls it.
			c.heartbeat()
			sendMsg()
			if n := count(); n != 0 {
				t.Fatalf("Logic.Heartbeat called %d times within the interval", n)
			}
			// Op 4 after the interval refreshes the session, once.
			clock.Add(int64(interval))
			sendMsg()
			sendMsg()
			c.heartbeat()
			if n := count(); n != 1 {
				t.Fatalf("after one interval of Op 4 traffic: %d calls, want 1", n)
			}
			clock.Add(int64(interval))
			if tr == transportWS {
				// A WebSocket ping is traffic too.
				c.write(wsFrameBytes(0x9, true, []byte("p")))
				op, payload, err := c.readFrame()
				if err != nil || op != 0xa || string(payload) != "p" {
					t.Fatalf("pong: op %x %q %v", op, payload, err)
				}
			} else {
				c.heartbeat()
			}
			if n := count(); n != 2 {
				t.Fatalf("after two intervals: %d calls, want 2", n)
			}
			conns, _, hbs := logic.connIDs()
			for _, id := range hbs {
				if id != conns[0] {
					t.Fatalf("Heartbeat ConnID %q, want %q", id, conns[0])
				}
			}
		})
	}
}

// TestWSQueryTokenMalformedQuery: a malformed pair elsewhere in the query
// string does not discard a valid token.
func TestWSQueryTokenMalformedQuery(t *testing.T) {
	logic := &fakeLogic{}
	s := startServer(t, testConfig(), logic)
	c := dialWS(t, s, "/sub?token=uid:9&x=%zz")
	body, _ := json.Marshal(authBody{Key: "q"})
	c.send(protocol.OpAuth, body)
	p := c.expect(protocol.OpAuthReply)
	if !bytes.Contains(p.Body, []byte(`"user_id":9`)) {
		t.Fatalf("auth reply %q", p.Body)
	}
}

// TestSubBeyondMaxAccepts: Op 15 lists only the ops applied; ops beyond
// protocol.MaxAccepts (the bound Op 7's accepts has too) are not.
func TestSubBeyondMaxAccepts(t *testing.T) {
	s := startServer(t, testConfig(), &fakeLogic{})
	c := dialTCP(t, s)
	c.auth("uid:1", "k", "", 1000) // one from Op 7
	var body []byte
	for op := 1001; op < 1000+protocol.MaxAccepts+5; op++ {
		if len(body) > 0 {
			body = append(body, ',')
		}
		body = strconv.AppendInt(body, int64(op), 10)
	}
	c.send(protocol.OpSub, body)
	p := c.expect(protocol.OpSubReply)
	got := strings.Split(string(p.Body), ",")
	// 1000 is held, so 1001..1255 fit.
	if len(got) != protocol.MaxAccepts-1 || got[0] != "1001" || got[len(got)-1] != strconv.Itoa(1000+protocol.MaxAccepts-1) {
		t.Fatalf("op 15 lists %d ops (%s..%s), want 1001..%d", len(got), got[0], got[len(got)-1], 1000+protocol.MaxAccepts-1)
	}
	// Unsub frees room; the reply lists the valid ops of the request.
	c.send(protocol.OpUnsub, []byte("1000,x,1001"))
	if p := c.expect(protocol.OpUnsubReply); string(p.Body) != "1000,1001" {
		t.Fatalf("op 17 body %q", p.Body)
	}
	c.send(protocol.OpSub, []byte("5000,5001,5002"))
	if p := c.expect(protocol.OpSubReply); string(p.Body) != "5000,5001" {
		t.Fatalf("op 15 body %q, want the two that fit", p.Body)
	}
}

// TestShutdownCutShortStillTells: when Shutdown's context ends during the
// paced drain, the connections not told yet still get Op 6 server_draining
// before they are closed.
func TestShutdownCutShortStillTells(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			cfg := testConfig()
			cfg.DrainWindow = time.Hour // no deadline on ctx: the pacing keeps it
			s := startServer(t, cfg, &fakeLogic{})
			var cs []*client
			for i := range 3 {
				c := dial(t, s, tr)
				c.auth("uid:"+strconv.Itoa(i+1), "", "")
				cs = append(cs, c)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Shutdown(ctx) }()
			// The first connection is told at once; the next one is due
			// 20 minutes later. Cut the drain short while it waits.
			waitFor(t, "the first connection drained", func() bool { return s.live.Load() == 2 })
			cancel()
			for _, c := range cs {
				c.expectDisconnect(protocol.CodeServerDraining)
			}
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Shutdown = %v, want context.Canceled", err)
			}
		})
	}
}

// TestRenewOnlineTakenAt: the report carries the time taken before its room
// snapshot, so that logic keeps the rooms joined while it was in flight.
func TestRenewOnlineTakenAt(t *testing.T) {
	logic := &fakeLogic{}
	before := time.Now()
	startServer(t, testConfig(), logic)
	waitFor(t, "a report", func() bool {
		logic.mu.Lock()
		defer logic.mu.Unlock()
		return len(logic.reports) > 0
	})
	logic.mu.Lock()
	r := logic.reports[0]
	logic.mu.Unlock()
	if r.TakenAt.Before(before) || r.TakenAt.After(time.Now()) {
		t.Fatalf("TakenAt %v, want the time of the report", r.TakenAt)
	}
}

package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

var transports = []string{TransportTCP, TransportWS}

func testConfig(s *fakeServer, transport string) Config {
	return Config{Addr: s.addr, Transport: transport, Token: "good", DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
}

func dialT(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recvPacket waits for the next push.
func recvPacket(t testing.TB, c *Client) protocol.Packet {
	t.Helper()
	select {
	case p, ok := <-c.Packets():
		if !ok {
			t.Fatalf("Packets closed: %v", c.Err())
		}
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no packet within 10s")
	}
	return protocol.Packet{}
}

// stateLog records state changes.
type stateLog struct {
	mu  sync.Mutex
	all []StateChange
}

func (l *stateLog) add(sc StateChange) {
	l.mu.Lock()
	l.all = append(l.all, sc)
	l.mu.Unlock()
}

func (l *stateLog) find(s State) (StateChange, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, sc := range l.all {
		if sc.State == s {
			return sc, true
		}
	}
	return StateChange{}, false
}

func TestAuth(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			tests := []struct {
				name     string
				mutate   func(*Config)
				wantCode string
				check    func(t *testing.T, s *fakeServer, c *Client)
			}{
				{
					name: "server assigns key",
					mutate: func(cfg *Config) {
						cfg.Room, cfg.Platform, cfg.Accepts = "live://1000", "pc", []int32{1002, 1001, 1002}
					},
					check: func(t *testing.T, s *fakeServer, c *Client) {
						ar := c.AuthReply()
						if ar.UserID != 42 || ar.Key != "srv-key-1" || ar.HeartbeatS != 30 || ar.Node != "fake-1" || ar.ServerTimeMs != 1732800000000 {
							t.Fatalf("AuthReply = %+v", ar)
						}
						if c.Key() != "srv-key-1" {
							t.Fatalf("Key = %q", c.Key())
						}
						req := s.auth(0).Req
						if req.Token != "good" || req.Key != "" || req.RoomID != "live://1000" || req.Platform != "pc" || !slices.Equal(req.Accepts, []int32{1001, 1002}) {
							t.Fatalf("auth req = %+v", req)
						}
					},
				},
				{
					name:   "own key",
					mutate: func(cfg *Config) { cfg.Key = "dev-1" },
					check: func(t *testing.T, s *fakeServer, c *Client) {
						if s.auth(0).Req.Key != "dev-1" || c.Key() != "dev-1" {
							t.Fatalf("key sent %q, kept %q", s.auth(0).Req.Key, c.Key())
						}
					},
				},
				{
					name:     "refused",
					mutate:   func(cfg *Config) { cfg.Token = "forged" },
					wantCode: protocol.CodeUnauthorized,
				},
			}
			if tr == TransportWS {
				tests = append(tests, struct {
					name     string
					mutate   func(*Config)
					wantCode string
					check    func(t *testing.T, s *fakeServer, c *Client)
				}{
					name:   "token in query",
					mutate: func(cfg *Config) { cfg.TokenInQuery = true },
					check: func(t *testing.T, s *fakeServer, c *Client) {
						if a := s.auth(0); a.Query != "good" || a.Req.Token != "" {
							t.Fatalf("auth = %+v", a)
						}
					},
				})
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					s := newFakeServer(t, tr)
					cfg := testConfig(s, tr)
					tc.mutate(&cfg)
					c, err := Dial(context.Background(), cfg)
					if tc.wantCode != "" {
						var ae *AuthError
						if !errors.As(err, &ae) || ae.Code != tc.wantCode {
							t.Fatalf("Dial err = %v, want AuthError %s", err, tc.wantCode)
						}
						if ErrorCode(err) != tc.wantCode {
							t.Fatalf("ErrorCode = %q", ErrorCode(err))
						}
						return
					}
					if err != nil {
						t.Fatalf("Dial: %v", err)
					}
					defer c.Close()
					if c.State() != StateConnected {
						t.Fatalf("state %v", c.State())
					}
					tc.check(t, s, c)
				})
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no address", Config{Token: "x"}, "no address"},
		{"bad transport", Config{Addr: "127.0.0.1:1", Transport: "quic"}, "unknown transport"},
		{"bad backoff", Config{Addr: "127.0.0.1:1", MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Dial(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("tries alternative addresses", func(t *testing.T) {
		s := newFakeServer(t, TransportTCP)
		dead := newFakeServer(t, TransportTCP)
		dead.Close() // its port now refuses connections
		cfg := testConfig(s, TransportTCP)
		cfg.Addr, cfg.Addrs = dead.addr, []string{s.addr}
		c := dialT(t, cfg)
		if c.Addr() != s.addr {
			t.Fatalf("connected to %s, want %s", c.Addr(), s.addr)
		}
	})
}

func TestDialTimeoutSilentServer(t *testing.T) {
	s := newFakeServer(t, TransportTCP)
	// Take the connections over before auth: a listener that never answers.
	block := make(chan struct{})
	defer close(block)
	s.authHook = func(int, authReq, string) string { <-block; return "" }
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, testConfig(s, TransportTCP))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestRequestOutOfOrder(t *testing.T) {
	const n = 8
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var (
				mu   sync.Mutex
				held []protocol.Packet
			)
			s := newFakeServer(t, tr, func(s *fakeServer) {
				s.handle = func(fc *fakeConn, p protocol.Packet) bool {
					if p.Op != 1000 {
						return false
					}
					mu.Lock()
					held = append(held, p)
					var batch []protocol.Packet
					if len(held) == n {
						batch, held = held, nil
					}
					mu.Unlock()
					for i := len(batch) - 1; i >= 0; i-- { // reverse order
						q := batch[i]
						_ = fc.write(protocol.Packet{Ver: q.Ver, Op: 1001, Seq: q.Seq, Body: append([]byte("re:"), q.Body...)})
					}
					return true
				}
			})
			c := dialT(t, testConfig(s, tr))
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					body := fmt.Sprintf("req-%d", i)
					p, err := c.Request(context.Background(), 1000, []byte(body))
					if err != nil {
						errs <- err
						return
					}
					if p.Op != 1001 || string(p.Body) != "re:"+body {
						errs <- fmt.Errorf("request %d got op %d body %q", i, p.Op, p.Body)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestRequestErrors(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			s := newFakeServer(t, tr, func(s *fakeServer) {
				s.handle = func(fc *fakeConn, p protocol.Packet) bool { return p.Op == 1002 } // never answered
			})
			cfg := testConfig(s, tr)
			cfg.MaxSendBody = 100
			c := dialT(t, cfg)

			_, err := c.Request(context.Background(), 77, nil)
			if !errors.Is(err, &CodeError{Code: protocol.CodeUnknownOp}) {
				t.Fatalf("unknown op: err = %v", err)
			}
			if _, err := c.Request(context.Background(), 1000, make([]byte, 101)); !errors.Is(err, ErrBodyTooLarge) {
				t.Fatalf("large body: err = %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := c.Request(ctx, 1002, nil); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("timeout: err = %v", err)
			}
			// The connection still works after a timed-out request.
			online, err := c.Heartbeat(context.Background())
			if err != nil || online != 7 {
				t.Fatalf("Heartbeat = %d, %v", online, err)
			}
		})
	}
}

func TestRequestTimeoutDefault(t *testing.T) {
	s := newFakeServer(t, TransportTCP, func(s *fakeServer) {
		s.handle = func(fc *fakeConn, p protocol.Packet) bool { return p.Op == 1002 }
	})
	cfg := testConfig(s, TransportTCP)
	cfg.RequestTimeout = 20 * time.Millisecond
	c := dialT(t, cfg)
	if _, err := c.Request(context.Background(), 1002, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestBatchSplitting(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			s := newFakeServer(t, tr, func(s *fakeServer) {
				s.handle = func(fc *fakeConn, p protocol.Packet) bool {
					if p.Op != 1000 {
						return false
					}
					// The reply travels inside a batch, between two pushes.
					_ = fc.writeBatch(
						protocol.Packet{Ver: 1, Op: 1005, Body: []byte("before")},
						protocol.Packet{Ver: 1, Op: 1001, Seq: p.Seq, Body: []byte("reply")},
						protocol.Packet{Ver: 1, Op: 1005, Body: []byte("after")},
					)
					return true
				}
			})
			c := dialT(t, testConfig(s, tr))
			fc := s.authedConn(t, 0)

			want := []protocol.Packet{
				{Ver: 1, Op: protocol.OpEvent, Body: []byte(`{"type":"typing","conversation_id":"p_7_42","user_id":7}`)},
				{Ver: 1, Op: 1001, Body: []byte("b")},
				{Ver: 1, Op: 1002, Body: nil},
				{Ver: 1, Op: 1003, Body: []byte("plain-1")},
				{Ver: 1, Op: 1004, Body: []byte("plain-2")},
			}
			if err := fc.writeBatch(want[:3]...); err != nil {
				t.Fatal(err)
			}
			if err := fc.write(want[3:]...); err != nil { // TCP: one write; WS: one frame each
				t.Fatal(err)
			}
			for i, w := range want {
				got := recvPacket(t, c)
				if got.Op != w.Op || got.Seq != 0 || string(got.Body) != string(w.Body) {
					t.Fatalf("packet %d = op %d seq %d %q, want op %d %q", i, got.Op, got.Seq, got.Body, w.Op, w.Body)
				}
			}

			p, err := c.Request(context.Background(), 1000, nil)
			if err != nil || string(p.Body) != "reply" {
				t.Fatalf("Request = %q, %v", p.Body, err)
			}
			for _, w := range []string{"before", "after"} {
				if got := recvPacket(t, c); got.Op != 1005 || string(got.Body) != w {
					t.Fatalf("got op %d %q, want %q", got.Op, got.Body, w)
				}
			}
		})
	}
}

func TestAuthReplyInBatch(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			s := newFakeServer(t, tr, func(s *fakeServer) { s.batchAuth = true })
			c := dialT(t, testConfig(s, tr))
			if c.AuthReply().UserID != 42 {
				t.Fatalf("AuthReply = %+v", c.AuthReply())
			}
			if p := recvPacket(t, c); p.Op != 1001 || string(p.Body) != "early" {
				t.Fatalf("early packet = op %d %q", p.Op, p.Body)
			}
		})
	}
}

func TestHeartbeatLoop(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			s := newFakeServer(t, tr)
			cfg := testConfig(s, tr)
			cfg.Heartbeat = 5 * time.Millisecond
			c := dialT(t, cfg)
			waitFor(t, func() bool { return s.opCount(protocol.OpHeartbeat) >= 3 }, "3 background heartbeats")
			online, err := c.Heartbeat(context.Background())
			if err != nil || online != 7 {
				t.Fatalf("Heartbeat = %d, %v", online, err)
			}
			if c.State() != StateConnected {
				t.Fatalf("state = %v", c.State())
			}
		})
	}
}

func TestHeartbeatTimeoutReconnects(t *testing.T) {
	s := newFakeServer(t, TransportTCP, func(s *fakeServer) { s.ignoreHeartbeatConn = 0 })
	var log stateLog
	cfg := testConfig(s, TransportTCP)
	cfg.Heartbeat, cfg.RequestTimeout = 5*time.Millisecond, 30*time.Millisecond
	cfg.Reconnect, cfg.MinBackoff, cfg.MaxBackoff = true, time.Millisecond, 5*time.Millisecond
	cfg.OnStateChange = log.add
	c := dialT(t, cfg)
	waitFor(t, func() bool { _, ok := log.find(StateConnected); return ok }, "reconnect")
	sc, _ := log.find(StateDisconnected)
	if !errors.Is(sc.Err, ErrHeartbeatTimeout) {
		t.Fatalf("disconnect cause = %v", sc.Err)
	}
	if s.authCount() < 2 {
		t.Fatalf("auths = %d", s.authCount())
	}
	if _, err := c.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestReconnect(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			s := newFakeServer(t, tr, func(s *fakeServer) {
				s.handle = func(fc *fakeConn, p protocol.Packet) bool { return p.Op == 1002 } // held forever
			})
			var log stateLog
			cfg := testConfig(s, tr)
			cfg.Reconnect, cfg.MinBackoff, cfg.MaxBackoff = true, time.Millisecond, 5*time.Millisecond
			cfg.Accepts = []int32{1000}
			cfg.OnStateChange = log.add
			c := dialT(t, cfg)
			ctx := context.Background()
			if err := c.JoinRoom(ctx, "live://7"); err != nil {
				t.Fatal(err)
			}
			if err := c.Sub(ctx, 1002, 1001); err != nil {
				t.Fatal(err)
			}
			if err := c.Unsub(ctx, 1000); err != nil {
				t.Fatal(err)
			}
			pending := make(chan error, 1)
			go func() {
				_, err := c.Request(ctx, 1002, nil)
				pending <- err
			}()
			waitFor(t, func() bool { return s.opCount(1002) == 1 }, "held request")

			_ = s.authedConn(t, 0).nc.Close() // the server drops the connection

			if err := <-pending; !errors.Is(err, ErrConnLost) {
				t.Fatalf("pending request err = %v, want ErrConnLost", err)
			}
			waitFor(t, func() bool { _, ok := log.find(StateConnected); return ok }, "reconnected")
			a := s.auth(1)
			if a.Req.Key != "srv-key-1" || a.Req.RoomID != "live://7" || !slices.Equal(a.Req.Accepts, []int32{1001, 1002}) || a.Req.Token != "good" {
				t.Fatalf("re-auth = %+v", a.Req)
			}
			if _, ok := log.find(StateDisconnected); !ok {
				t.Fatal("no StateDisconnected")
			}
			rc, ok := log.find(StateReconnecting)
			if !ok || rc.Addr != s.addr || rc.Attempt != 1 {
				t.Fatalf("reconnecting = %+v, %v", rc, ok)
			}
			if online, err := c.Heartbeat(ctx); err != nil || online != 7 {
				t.Fatalf("Heartbeat after reconnect = %d, %v", online, err)
			}
			if c.Key() != "srv-key-1" || c.Room() != "live://7" {
				t.Fatalf("key %q room %q", c.Key(), c.Room())
			}
		})
	}
}

func TestReconnectRefreshesToken(t *testing.T) {
	s := newFakeServer(t, TransportTCP, func(s *fakeServer) {
		s.authHook = func(n int, req authReq, _ string) string {
			if want := fmt.Sprintf("tok-%d", n); req.Token != want {
				return protocol.CodeUnauthorized
			}
			return ""
		}
	})
	var (
		mu  sync.Mutex
		n   int
		log stateLog
	)
	cfg := testConfig(s, TransportTCP)
	cfg.OnStateChange = log.add
	cfg.Token = "tok-0"
	cfg.Reconnect, cfg.MinBackoff, cfg.MaxBackoff = true, time.Millisecond, time.Millisecond
	cfg.RefreshToken = func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("tok-%d", n), nil
	}
	c := dialT(t, cfg)
	_ = s.authedConn(t, 0).nc.Close()
	waitFor(t, func() bool { _, ok := log.find(StateConnected); return ok }, "reconnect")
	if s.authCount() != 2 {
		t.Fatalf("auths = %d", s.authCount())
	}
	if _, err := c.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDraining(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			a := newFakeServer(t, tr)
			b := newFakeServer(t, tr)
			var log stateLog
			cfg := testConfig(a, tr)
			cfg.Reconnect, cfg.MinBackoff, cfg.MaxBackoff = true, time.Hour, time.Hour // only reconnect_after_ms can make it quick
			cfg.OnStateChange = log.add
			c := dialT(t, cfg)
			key := c.Key()
			if err := a.authedConn(t, 0).disconnect(protocol.CodeServerDraining, "bye", 5, []string{b.addr}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return b.authCount() == 1 }, "auth on the other node")
			if got := b.auth(0).Req.Key; got != key {
				t.Fatalf("key on new node = %q, want %q", got, key)
			}
			waitFor(t, func() bool { return c.State() == StateConnected }, "connected")
			if c.Addr() != b.addr {
				t.Fatalf("Addr = %s, want %s", c.Addr(), b.addr)
			}
			d, _ := log.find(StateDisconnected)
			var de *DisconnectError
			if !errors.As(d.Err, &de) || de.Code != protocol.CodeServerDraining || de.ReconnectAfter != 5*time.Millisecond || !slices.Equal(de.Addrs, []string{b.addr}) {
				t.Fatalf("disconnect = %+v", d.Err)
			}
			rc, _ := log.find(StateReconnecting)
			if rc.Addr != b.addr || rc.Delay != 5*time.Millisecond {
				t.Fatalf("reconnecting = %+v", rc)
			}
			if _, err := c.Heartbeat(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTerminalDisconnect(t *testing.T) {
	for _, code := range []string{protocol.CodeReplaced, protocol.CodeUnauthorized, protocol.CodeKicked} {
		t.Run(code, func(t *testing.T) {
			s := newFakeServer(t, TransportTCP)
			var log stateLog
			cfg := testConfig(s, TransportTCP)
			cfg.Reconnect, cfg.MinBackoff, cfg.MaxBackoff = true, time.Millisecond, time.Millisecond
			cfg.OnStateChange = log.add
			c := dialT(t, cfg)
			if err := s.authedConn(t, 0).disconnect(code, "why", 0, nil); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("client did not finish")
			}
			var de *DisconnectError
			if err := c.Err(); !errors.As(err, &de) || de.Code != code || de.Reason != "why" {
				t.Fatalf("Err = %v", err)
			}
			if _, ok := <-c.Packets(); ok {
				t.Fatal("Packets not closed")
			}
			if c.State() != StateClosed {
				t.Fatalf("state = %v", c.State())
			}
			if _, ok := log.find(StateReconnecting); ok {
				t.Fatal("reconnect attempted")
			}
			if _, err := c.Request(context.Background(), 1000, nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("Request after finish: %v", err)
			}
		})
	}
}

func TestReconnectRefusedFinishes(t *testing.T) {
	s := newFakeServer(t, TransportTCP, func(s *fakeServer) {
		s.authHook = func(n int, _ authReq, _ string) string {
			if n > 0 {
				return protocol.CodeUnauthorized
			}
			return ""
		}
	})
	cfg := testConfig(s, TransportTCP)
	cfg.Reconnect, cfg.MinBackoff, cfg.MaxBackoff = true, time.Millisecond, time.Millisecond
	c := dialT(t, cfg)
	_ = s.authedConn(t, 0).nc.Close()
	<-c.Done()
	var ae *AuthError
	if err := c.Err(); !errors.As(err, &ae) || ae.Code != protocol.CodeUnauthorized {
		t.Fatalf("Err = %v", err)
	}
}

func TestNoReconnect(t *testing.T) {
	s := newFakeServer(t, TransportTCP)
	c := dialT(t, testConfig(s, TransportTCP))
	_ = s.authedConn(t, 0).nc.Close()
	<-c.Done()
	if err := c.Err(); !errors.Is(err, io.EOF) {
		t.Fatalf("Err = %v, want EOF", err)
	}
	if err := c.Send(context.Background(), 1000, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send = %v", err)
	}
}

func TestClose(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			base := runtime.NumGoroutine()
			s := newFakeServer(t, tr, func(s *fakeServer) {
				s.handle = func(fc *fakeConn, p protocol.Packet) bool { return p.Op == 1002 }
			})
			cfg := testConfig(s, tr)
			cfg.Heartbeat = time.Millisecond
			cfg.Reconnect = true
			c := dialT(t, cfg)
			pending := make(chan error, 1)
			go func() {
				_, err := c.Request(context.Background(), 1002, nil)
				pending <- err
			}()
			waitFor(t, func() bool { return s.opCount(1002) == 1 }, "held request")
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-pending; !errors.Is(err, ErrClosed) {
				t.Fatalf("pending request: %v", err)
			}
			if err := c.Close(); err != nil { // idempotent
				t.Fatal(err)
			}
			if !errors.Is(c.Err(), ErrClosed) || c.State() != StateClosed {
				t.Fatalf("Err %v state %v", c.Err(), c.State())
			}
			s.Close()
			checkGoroutines(t, base)
		})
	}
}

func TestCloseWhileReconnecting(t *testing.T) {
	base := runtime.NumGoroutine()
	s := newFakeServer(t, TransportTCP)
	var log stateLog
	cfg := testConfig(s, TransportTCP)
	cfg.Reconnect, cfg.MinBackoff, cfg.MaxBackoff = true, time.Hour, time.Hour
	cfg.OnStateChange = log.add
	c := dialT(t, cfg)
	// Make the wait long for sure: Op 6 asks for 10 minutes.
	_ = s.authedConn(t, 0).disconnect(protocol.CodeServerDraining, "", 600000, nil)
	waitFor(t, func() bool { return c.State() == StateReconnecting }, "reconnecting")
	if _, err := c.Request(context.Background(), 1000, nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Request while reconnecting: %v", err)
	}
	_ = c.Close()
	s.Close()
	checkGoroutines(t, base)
}

func TestIMHelpers(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			s := newFakeServer(t, tr)
			c := dialT(t, testConfig(s, tr))
			ctx := context.Background()

			ack, err := c.SendMessage(ctx, SendReq{ClientMsgID: "c1", ToUser: 7, Type: TypeText, Content: []byte(`{"text":"hi"}`)})
			if err != nil {
				t.Fatal(err)
			}
			if ack != (SendAck{ClientMsgID: "c1", MsgID: "1873000000000000001", ConversationID: "p_7_42", Seq: 12, CreatedAtMs: 1732800000001}) {
				t.Fatalf("ack = %+v", ack)
			}
			_, err = c.SendMessage(ctx, SendReq{ClientMsgID: "c2", ToUser: 13, Type: TypeText, Content: []byte(`{"text":"hi"}`)})
			var ce *CodeError
			if !errors.As(err, &ce) || ce.Code != protocol.CodeNotFriends || ce.Message != "you are not friends" {
				t.Fatalf("refused send: %v", err)
			}

			resp, err := c.Sync(ctx, SyncReq{ConversationID: "p_7_42", AfterSeq: 10})
			if err != nil {
				t.Fatal(err)
			}
			if !resp.HasMore || len(resp.Messages) != 1 || resp.Messages[0].Seq != 11 || string(resp.Messages[0].Content) != `{"text":"hi"}` || resp.Messages[0].MsgID != "1873000000000000001" {
				t.Fatalf("sync = %+v", resp)
			}

			if err := c.Ack(ctx, AckReq{ConversationID: "p_7_42", Seq: 11, Kind: AckRead}); err != nil {
				t.Fatal(err)
			}
			if err := c.Ack(ctx, AckReq{ConversationID: "p_7_42", Seq: -1, Kind: AckRead}); !errors.Is(err, &CodeError{Code: protocol.CodeBadRequest}) {
				t.Fatalf("bad ack: %v", err)
			}

			if err := c.Typing(ctx, "p_7_42"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return len(s.typing) == 1 && string(s.typing[0]) == `{"conversation_id":"p_7_42"}`
			}, "typing packet")

			// An Op 22 push parsed with ParseEvent.
			fc := s.authedConn(t, 0)
			_ = fc.write(protocol.Packet{Ver: 1, Op: protocol.OpEvent, Body: []byte(`{"type":"message","message":{"msg_id":"9","conversation_id":"g_3","seq":4,"sender_id":7,"group_id":3,"type":1,"content":{"text":"yo"}}}`)})
			p := recvPacket(t, c)
			ev, err := ParseEvent(p.Body)
			if err != nil || ev.Type != EventMessage || ev.Message == nil || ev.Message.GroupID != 3 || ev.Message.Seq != 4 || string(ev.Raw) != string(p.Body) {
				t.Fatalf("event = %+v, %v", ev, err)
			}
		})
	}
}

func TestWebSocketControlFrames(t *testing.T) {
	s := newFakeServer(t, TransportWS)
	c := dialT(t, testConfig(s, TransportWS))
	fc := s.authedConn(t, 0)
	if err := fc.writeFrame(ws.NewPingFrame([]byte("hello"))); err != nil {
		t.Fatal(err)
	}
	// A push split over a fragmented message: first frame + continuation.
	enc := protocol.Encode(protocol.Packet{Ver: 1, Op: 1001, Body: []byte("fragmented")})
	if err := fc.writeFrame(ws.NewFrame(ws.OpBinary, false, enc[:10])); err != nil {
		t.Fatal(err)
	}
	if err := fc.writeFrame(ws.NewFrame(ws.OpContinuation, true, enc[10:])); err != nil {
		t.Fatal(err)
	}
	if p := recvPacket(t, c); p.Op != 1001 || string(p.Body) != "fragmented" {
		t.Fatalf("got op %d %q", p.Op, p.Body)
	}
	waitFor(t, func() bool { return s.pongs.Load() == 1 }, "pong")
	if err := fc.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"))); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("Err = %v", err)
	}
}

func TestBackpressure(t *testing.T) {
	const n = 20
	s := newFakeServer(t, TransportTCP)
	cfg := testConfig(s, TransportTCP)
	cfg.InboundBuffer = 1
	c := dialT(t, cfg)
	fc := s.authedConn(t, 0)
	var ps []protocol.Packet
	for i := range n {
		ps = append(ps, protocol.Packet{Ver: 1, Op: 1001, Body: fmt.Appendf(nil, "%d", i)})
	}
	if err := fc.write(ps...); err != nil {
		t.Fatal(err)
	}
	// Nothing is dropped while the application does not read: all arrive in order.
	for i := range n {
		if p := recvPacket(t, c); string(p.Body) != fmt.Sprint(i) {
			t.Fatalf("packet %d = %q", i, p.Body)
		}
	}
}

func TestPacketBodiesAreOwned(t *testing.T) {
	s := newFakeServer(t, TransportTCP)
	c := dialT(t, testConfig(s, TransportTCP))
	fc := s.authedConn(t, 0)
	var ps []protocol.Packet
	for i := range 300 { // more than one slab and one read buffer
		ps = append(ps, protocol.Packet{Ver: 1, Op: 1001, Body: []byte(strings.Repeat(fmt.Sprint(i%10), 50))})
	}
	if err := fc.write(ps...); err != nil {
		t.Fatal(err)
	}
	var got []protocol.Packet
	for range ps {
		got = append(got, recvPacket(t, c))
	}
	for i, p := range got {
		if string(p.Body) != string(ps[i].Body) {
			t.Fatalf("packet %d body changed: %q", i, p.Body)
		}
		p.Body = append(p.Body, 'x') // must not clobber the next body
	}
	for i, p := range got {
		if string(p.Body) != string(ps[i].Body) {
			t.Fatalf("packet %d body clobbered: %q", i, p.Body)
		}
	}
}

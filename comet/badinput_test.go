package comet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/goimdev/goim/protocol"
)

// rawHeader builds a 16-byte header with arbitrary fields.
func rawHeader(packLen int32, headerLen int16, op int32) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:], uint32(packLen))
	binary.BigEndian.PutUint16(b[4:], uint16(headerLen))
	binary.BigEndian.PutUint16(b[6:], 1)
	binary.BigEndian.PutUint32(b[8:], uint32(op))
	return b
}

// TestBadInput: after each misbehaving client the server still serves a
// fresh one.
func TestBadInput(t *testing.T) {
	logic := &fakeLogic{}
	cfg := testConfig()
	cfg.MaxBody = 1024
	cfg.MaxPreAuthBytes = 512
	s := startServer(t, cfg, logic)
	authed := func(t *testing.T, tr string) *client {
		c := dial(t, s, tr)
		c.auth("uid:1", "", "")
		return c
	}
	tests := []struct {
		name string
		tr   string
		run  func(t *testing.T, tr string)
	}{
		{"oversized PackLen", "", func(t *testing.T, tr string) {
			c := authed(t, tr)
			big := protocol.Packet{Ver: 1, Op: protocol.OpSendMsg, Body: make([]byte, 1025)}
			c.write(c.packetBytes(big)[:40]) // the header is enough (TCP); WS refuses the frame length
			c.expectDisconnect(protocol.CodePacketTooLarge)
		}},
		{"PackLen beyond int32 body limit", transportTCP, func(t *testing.T, tr string) {
			c := authed(t, tr)
			c.write(rawHeader(0x7fffffff, 16, protocol.OpSendMsg))
			c.expectDisconnect(protocol.CodePacketTooLarge)
		}},
		{"HeaderLen not 16", "", func(t *testing.T, tr string) {
			c := authed(t, tr)
			h := rawHeader(20, 18, protocol.OpHeartbeat)
			h = append(h, 0, 0, 0, 0)
			if c.ws {
				h = wsFrameBytes(0x2, true, h)
			}
			c.write(h)
			c.expectEOF()
		}},
		{"PackLen below 16", "", func(t *testing.T, tr string) {
			c := dial(t, s, tr)
			h := rawHeader(8, 16, protocol.OpAuth)
			if c.ws {
				h = wsFrameBytes(0x2, true, h)
			}
			c.write(h)
			c.expectEOF()
		}},
		{"negative PackLen", transportTCP, func(t *testing.T, tr string) {
			c := dial(t, s, tr)
			c.write(rawHeader(-5, 16, protocol.OpAuth))
			c.expectEOF()
		}},
		{"op before auth", "", func(t *testing.T, tr string) {
			c := dial(t, s, tr)
			c.send(protocol.OpHeartbeat, nil)
			c.expectDisconnect(protocol.CodeUnauthorized)
		}},
		{"auth refused", "", func(t *testing.T, tr string) {
			c := dial(t, s, tr)
			body, _ := json.Marshal(authBody{Token: "bad"})
			c.send(protocol.OpAuth, body)
			d := c.expectDisconnect(protocol.CodeUnauthorized)
			if d.Reason != "bad token" {
				t.Fatalf("reason %q", d.Reason)
			}
		}},
		{"auth with plain error", "", func(t *testing.T, tr string) {
			c := dial(t, s, tr)
			c.send(protocol.OpAuth, []byte("not json"))
			c.expectDisconnect(protocol.CodeUnauthorized)
		}},
		{"pre-auth bytes", "", func(t *testing.T, tr string) {
			c := dial(t, s, tr)
			c.send(protocol.OpAuth, bytes.Repeat([]byte("a"), 600))
			c.expectDisconnect(protocol.CodePacketTooLarge)
		}},
		{"unknown op after auth", "", func(t *testing.T, tr string) {
			c := authed(t, tr)
			c.send(4242, nil)
			if p := c.expect(4242); !bytes.Contains(p.Body, []byte("unknown_op")) {
				t.Fatalf("body %q", p.Body)
			}
			c.heartbeat()
		}},
		{"ws unmasked frame", transportWS, func(t *testing.T, tr string) {
			c := authed(t, tr)
			p := protocol.Encode(protocol.Packet{Ver: 1, Op: protocol.OpHeartbeat})
			c.write(append([]byte{0x82, byte(len(p))}, p...))
			c.expectEOF()
		}},
		{"ws reserved bits", transportWS, func(t *testing.T, tr string) {
			c := authed(t, tr)
			f := wsFrameBytes(0x2, true, protocol.Encode(protocol.Packet{Ver: 1, Op: protocol.OpHeartbeat}))
			f[0] |= 0x40
			c.write(f)
			c.expectEOF()
		}},
		{"ws unknown opcode", transportWS, func(t *testing.T, tr string) {
			c := authed(t, tr)
			c.write(wsFrameBytes(0x5, true, []byte("x")))
			c.expectEOF()
		}},
		{"ws big ping", transportWS, func(t *testing.T, tr string) {
			c := authed(t, tr)
			c.write(wsFrameBytes(0x9, true, make([]byte, 200)))
			c.expectEOF()
		}},
		{"ws partial packet in frame", transportWS, func(t *testing.T, tr string) {
			c := authed(t, tr)
			p := protocol.Encode(protocol.Packet{Ver: 1, Op: protocol.OpHeartbeat, Body: []byte("abcd")})
			c.write(wsFrameBytes(0x2, true, p[:18]))
			c.expectEOF()
		}},
		{"ws garbage bytes", transportWS, func(t *testing.T, tr string) {
			c := authed(t, tr)
			c.write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
			c.expectEOF()
		}},
		{"ws continuation without start", transportWS, func(t *testing.T, tr string) {
			c := authed(t, tr)
			c.write(wsFrameBytes(0x0, true, []byte("x")))
			c.expectEOF()
		}},
		{"ws fragments and ping", transportWS, func(t *testing.T, tr string) {
			c := authed(t, tr)
			p := protocol.Encode(protocol.Packet{Ver: 1, Op: protocol.OpHeartbeat, Seq: 5})
			var b []byte
			b = append(b, wsFrameBytes(0x1, false, p[:5])...) // text counts as binary
			b = append(b, wsFrameBytes(0x9, true, []byte("hi"))...)
			b = append(b, wsFrameBytes(0x0, false, p[5:9])...)
			b = append(b, wsFrameBytes(0x0, true, p[9:])...)
			c.write(b)
			op, payload, err := c.readFrame()
			if err != nil || op != 0xa || string(payload) != "hi" {
				t.Fatalf("pong: op %x %q %v", op, payload, err)
			}
			if p := c.expect(protocol.OpHeartbeatReply); p.Seq != 5 {
				t.Fatalf("seq %d", p.Seq)
			}
		}},
		{"ws client close", transportWS, func(t *testing.T, tr string) {
			c := authed(t, tr)
			c.write(wsFrameBytes(0x8, true, []byte{0x03, 0xe8}))
			op, payload, err := c.readFrame()
			if err != nil || op != 0x8 || !bytes.Equal(payload, []byte{0x03, 0xe8}) {
				t.Fatalf("close reply op %x %x %v", op, payload, err)
			}
			c.expectEOF()
		}},
		{"ws bad path", transportWS, func(t *testing.T, tr string) {
			c, status := dialWSStatus(t, s, "/nope")
			if status != 404 {
				t.Fatalf("status %d", status)
			}
			c.expectEOF()
		}},
		{"ws not websocket", transportWS, func(t *testing.T, tr string) {
			conn, err := net.Dial("tcp", s.WSAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := &client{t: t, c: conn}
			c.br = newReader(conn)
			c.write([]byte("GET /sub HTTP/1.1\r\nHost: x\r\n\r\n"))
			line, _ := c.br.ReadString('\n')
			if !strings.Contains(line, " 400 ") {
				t.Fatalf("status line %q", line)
			}
			c.expectEOF()
		}},
		{"ws garbage handshake", transportWS, func(t *testing.T, tr string) {
			conn, err := net.Dial("tcp", s.WSAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := &client{t: t, c: conn, br: newReader(conn)}
			c.write([]byte{0x16, 0x03, 0x01, 0x02, 0x00}) // a TLS hello
			c.expectEOF()
		}},
		{"ws endless headers", transportWS, func(t *testing.T, tr string) {
			conn, err := net.Dial("tcp", s.WSAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := &client{t: t, c: conn, br: newReader(conn)}
			c.write([]byte("GET /sub HTTP/1.1\r\nX: " + strings.Repeat("a", 600)))
			line, _ := c.br.ReadString('\n')
			// The server answers 431 and closes; closing with unread
			// request bytes in its socket makes the kernel send a reset,
			// which may discard the answer before the client reads it.
			if line != "" && !strings.Contains(line, " 431 ") {
				t.Fatalf("status line %q", line)
			}
			c.expectEOF()
		}},
	}
	for _, tt := range tests {
		for _, tr := range transports {
			if tt.tr != "" && tt.tr != tr {
				continue
			}
			t.Run(tt.name+"/"+tr, func(t *testing.T) {
				tt.run(t, tr)
				checkServes(t, s)
			})
		}
	}
}

func TestTimeouts(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = 150 * time.Millisecond
	cfg.Heartbeat = 100 * time.Millisecond // idle after 300ms
	s := startServer(t, cfg, &fakeLogic{})
	for _, tr := range transports {
		t.Run("handshake/"+tr, func(t *testing.T) {
			c := dial(t, s, tr)
			start := time.Now()
			c.expectDisconnect(protocol.CodeHandshakeTimeout)
			if time.Since(start) < 100*time.Millisecond {
				t.Fatalf("closed after %v", time.Since(start))
			}
		})
		t.Run("idle/"+tr, func(t *testing.T) {
			c := dial(t, s, tr)
			c.auth("uid:1", "", "")
			c.heartbeat()
			c.expectDisconnect(protocol.CodeIdleTimeout)
		})
	}
	// A connection that keeps sending heartbeats stays.
	c := dialTCP(t, s)
	c.auth("uid:2", "", "")
	for range 8 {
		c.heartbeat()
		time.Sleep(60 * time.Millisecond) // client pacing below the idle timeout
	}
	if s.Stats().Conns != 1 {
		t.Fatalf("active connection closed: %+v", s.Stats())
	}
	// A plain TCP connect that sends nothing also times out (no Op 6 on an
	// un-upgraded WebSocket).
	conn, err := net.Dial("tcp", s.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	(&client{t: t, c: conn, br: newReader(conn)}).expectEOF()
}

func TestTooManyConnsPerIP(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnsPerIP = 2
	s := startServer(t, cfg, &fakeLogic{})
	a := dialTCP(t, s)
	a.auth("uid:1", "", "")
	b := dialWS(t, s, "/sub")
	b.auth("uid:2", "", "")
	for _, tr := range transports {
		c := dial(t, s, tr)
		c.expectDisconnect(protocol.CodeTooManyConns)
	}
	a.heartbeat()
	b.heartbeat()
	a.c.Close()
	waitFor(t, "slot freed", func() bool { return s.Stats().TCP == 0 })
	c := dialTCP(t, s)
	c.auth("uid:3", "", "")
}

func TestSameKeyReplaces(t *testing.T) {
	logic := &fakeLogic{}
	s := startServer(t, testConfig(), logic)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			key := "phone-" + tr
			old := dial(t, s, tr)
			old.auth("uid:7", key, "live://k")
			nu := dial(t, s, tr)
			nu.auth("uid:7", key, "live://k")
			old.expectDisconnect(protocol.CodeReplaced)
			waitFor(t, "old gone", func() bool { return s.Stats().Conns == 1 })
			if got := s.RoomCounts()["live://k"]; got != 1 {
				t.Fatalf("room count %d", got)
			}
			// The key routes to the new connection; the replaced one told
			// logic with its own ConnID, not the new connection's.
			if err := s.PushKeys(context.Background(), []string{key}, protocol.Packet{Ver: 1, Op: protocol.OpEvent, Body: []byte("n")}); err != nil {
				t.Fatal(err)
			}
			nu.expect(protocol.OpEvent)
			conns, _, _ := logic.connIDs()
			oldID, nuID := conns[len(conns)-2], conns[len(conns)-1]
			waitFor(t, "the replaced connection's Disconnect", func() bool {
				_, d, _ := logic.connIDs()
				return slices.Contains(d, oldID)
			})
			if _, d, _ := logic.connIDs(); slices.Contains(d, nuID) {
				t.Fatalf("Disconnect with the new connection's ConnID %q", nuID)
			}
			// Same key, other user: the newcomer is refused.
			other := dial(t, s, tr)
			body, _ := json.Marshal(authBody{Token: "uid:8", Key: key})
			other.send(protocol.OpAuth, body)
			if d := other.expectDisconnect(protocol.CodeUnauthorized); d.Reason != "key in use" {
				t.Fatalf("reason %q", d.Reason)
			}
			// The refused newcomer's own session (user 8) is dropped; the
			// holder keeps its key.
			conns, _, _ = logic.connIDs()
			otherID := conns[len(conns)-1]
			waitFor(t, "refused newcomer's disconnect", func() bool {
				_, d, _ := logic.connIDs()
				return slices.Contains(d, otherID)
			})
			nu.heartbeat()
			if err := s.PushKeys(context.Background(), []string{key}, protocol.Packet{Ver: 1, Op: protocol.OpEvent}); err != nil {
				t.Fatal(err)
			}
			nu.expect(protocol.OpEvent)
			n := len(logic.disconnected())
			nu.c.Close()
			waitFor(t, "holder's disconnect", func() bool { return len(logic.disconnected()) == n+1 })
		})
	}
}

func TestSlowConsumer(t *testing.T) {
	cfg := testConfig()
	cfg.OutQueue = 64
	cfg.WriteTimeout = 300 * time.Millisecond
	s := startServer(t, cfg, &fakeLogic{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			before := s.Stats().Dropped
			closes := counterValue(metricCloses.WithLabelValues(protocol.CodeSlowConsumer))
			slow := dial(t, s, tr)
			slow.auth("uid:1", "slow-"+tr, "")
			good := dial(t, s, tr)
			good.auth("uid:2", "good-"+tr, "")
			got := make(chan error, 1)
			go func() {
				for {
					p, err := good.read()
					if err != nil || p.Op != protocol.OpEvent {
						got <- fmt.Errorf("good client: op %d: %v", p.Op, err)
						return
					}
					got <- nil
				}
			}()
			// Push until the server gives up on the client that never
			// reads; each push waits for the good client to receive it, so
			// the good client never falls behind.
			body := make([]byte, 64<<10)
			ctx := context.Background()
			waitFor(t, "slow consumer cut", func() bool {
				if err := s.PushKeys(ctx, []string{"slow-" + tr, "good-" + tr}, protocol.Packet{Ver: 1, Op: protocol.OpEvent, Body: body}); err != nil {
					t.Fatal(err)
				}
				if err := <-got; err != nil {
					t.Fatal(err)
				}
				return s.Stats().Dropped > before
			})
			waitFor(t, "slow conn closed", func() bool { return s.Stats().Conns == 1 })
			if d := s.Stats().Dropped; d != before+1 {
				t.Fatalf("dropped went from %d to %d", before, d)
			}
			if got := counterValue(metricCloses.WithLabelValues(protocol.CodeSlowConsumer)); got != closes+1 {
				t.Fatalf("slow_consumer closes went from %v to %v", closes, got)
			}
			// The good client is unaffected.
			if err := s.PushKeys(ctx, []string{"good-" + tr}, protocol.Packet{Ver: 1, Op: protocol.OpEvent, Body: []byte("last")}); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
			good.c.Close()
			waitFor(t, "all closed", func() bool { return s.Stats().Conns == 0 })
		})
	}
}

func TestShutdownDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.DrainWindow = time.Hour // shortened to the context
	s, err := New(cfg, &fakeLogic{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c := dialTCP(t, s)
	c.auth("uid:1", "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 1900*time.Millisecond {
		t.Fatalf("shutdown took %v", d)
	}
	c.expectDisconnect(protocol.CodeServerDraining)
	// A stopped server accepts nothing.
	if _, err := net.DialTimeout("tcp", s.TCPAddr().String(), time.Second); err == nil {
		t.Log("dial after shutdown succeeded (port reused?)")
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

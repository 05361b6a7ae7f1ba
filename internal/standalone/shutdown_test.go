package standalone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/goimdev/goim/client"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/protocol"
)

// TestGracefulShutdown: every connected client, raw or SDK, TCP or
// WebSocket, receives Op 6 server_draining with reconnect_after_ms before
// its connection closes, and Shutdown returns once all are gone.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Comet.DrainWindow = 300 * time.Millisecond })
	u := newUser(t, s, "drainer")

	var raws []*rawConn
	for i := range 6 {
		transport := []string{"tcp", "ws"}[i%2]
		c := rawDial(t, s, transport, "")
		body, _ := json.Marshal(map[string]any{"token": u.token, "key": fmt.Sprintf("raw-%d", i)})
		c.write(frame(7, 1, body))
		if p := c.read(); p.op != 8 {
			t.Fatalf("auth: op %d %s", p.op, p.body)
		}
		raws = append(raws, c)
	}
	var sdks []*client.Client
	for i, transport := range []string{"tcp", "ws"} {
		sdks = append(sdks, dial(t, s, transport, u, client.Config{Key: fmt.Sprintf("sdk-%d", i)}))
	}

	type result struct {
		code    string
		afterMs float64
		err     error
	}
	results := make(chan result, len(raws))
	for _, c := range raws {
		go func() {
			_ = c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
			for {
				pkts, ok := c.readMessage()
				if !ok {
					results <- result{err: errors.New("closed without Op 6")}
					return
				}
				for _, p := range pkts {
					if p.op == protocol.OpDisconnect {
						var d map[string]any
						err := json.Unmarshal(p.body, &d)
						code, _ := d["code"].(string)
						after, _ := d["reconnect_after_ms"].(float64)
						// The connection must close after Op 6.
						for {
							if _, ok := c.readMessage(); !ok {
								break
							}
						}
						results <- result{code: code, afterMs: after, err: err}
						return
					}
				}
			}
		}()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := s.Comet().Stats().Conns; n != 0 {
		t.Fatalf("Shutdown returned with %d connections", n)
	}
	for range raws {
		r := <-results
		if r.err != nil || r.code != protocol.CodeServerDraining {
			t.Fatalf("raw client: code %q err %v", r.code, r.err)
		}
		if r.afterMs < 0 || r.afterMs > 300 {
			t.Fatalf("reconnect_after_ms %v outside the 300ms drain window", r.afterMs)
		}
	}
	for _, c := range sdks {
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("SDK client still connected after Shutdown")
		}
		var de *client.DisconnectError
		if !errors.As(c.Err(), &de) || de.Code != protocol.CodeServerDraining {
			t.Fatalf("SDK client ended with %v, want server_draining", c.Err())
		}
	}
}

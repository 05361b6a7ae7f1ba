package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/goimdev/goim/benchmarks/loadgen"
	"github.com/goimdev/goim/benchmarks/suite"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/standalone"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/sqlite"
)

// startInProcess seeds n users and starts the one-process server on
// loopback ports. The server is this test process (PID), so RSS and CPU
// figures are the test's own: only the code paths are checked.
func startInProcess(t *testing.T, n int, mods ...func(*config.Config)) suite.Target {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "goim.db"))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, n)
	for i := range ids {
		if ids[i], err = st.CreateUser(ctx, &store.User{Username: fmt.Sprintf("bench%d", i), PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Comet.TCPAddr = "127.0.0.1:0"
	cfg.Comet.WSAddr = "127.0.0.1:0"
	cfg.Comet.Heartbeat = 2 * time.Second
	cfg.Comet.DrainWindow = -1
	cfg.JWTSecret = suite.RandomSecret()
	cfg.ShutdownTimeout = 10 * time.Second
	for _, m := range mods {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := standalone.New(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return suite.Target{
		TCPAddr: srv.TCPAddr().String(), WSAddr: srv.WSAddr().String(), HTTPAddr: srv.HTTPAddr().String(),
		PID: os.Getpid(), Secret: cfg.JWTSecret, UserIDs: ids,
	}
}

func newPool(t *testing.T, n int) *loadgen.Pool {
	t.Helper()
	pool, err := loadgen.NewPool(context.Background(), n, loadgen.InProcessSpawner(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := pool.Close(ctx); err != nil {
			t.Errorf("pool close: %v", err)
		}
	})
	return pool
}

func TestEndToEndConns(t *testing.T) {
	tgt := startInProcess(t, 50)
	pool := newPool(t, 2)
	ctx := context.Background()
	run, err := suite.RunConns(ctx, suite.ConnsConfig{N: 50, Rate: 500, Settle: 1500 * time.Millisecond, Samples: 2}, tgt, pool)
	if err != nil {
		t.Fatal(err)
	}
	if run.Connected != 50 || run.Failed != 0 || run.OpenAfterSettle != 50 || run.ClosedByServer != 0 {
		t.Fatalf("connected %d failed %d open %d closed %d errors %v disconnects %v",
			run.Connected, run.Failed, run.OpenAfterSettle, run.ClosedByServer, run.Errors, run.Disconnects)
	}
	if run.Handshake.Count != 50 || run.RSSBytes.N != 2 || run.Goroutines <= 0 || run.IdleCPUPercent < 0 {
		t.Fatalf("measurements missing: handshakes %d rss samples %d goroutines %v cpu %v",
			run.Handshake.Count, run.RSSBytes.N, run.Goroutines, run.IdleCPUPercent)
	}
	if notes := run.Check(); len(notes) != 0 {
		t.Fatalf("notes: %q", notes)
	}
	st, err := pool.CloseConns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Open != 0 {
		t.Fatalf("%d connections still open", st.Open)
	}
}

func TestEndToEndRoom(t *testing.T) {
	for _, transport := range []string{loadgen.TransportTCP, loadgen.TransportWS} {
		t.Run(transport, func(t *testing.T) {
			tgt := startInProcess(t, 20)
			pool := newPool(t, 2)
			ctx := context.Background()
			res, err := suite.RunRoom(ctx, suite.RoomConfig{N: 20, Transport: transport, ConnectRate: 500, Rates: []float64{20},
				Duration: time.Second, Drain: 20 * time.Second, Quiet: 5 * time.Second}, tgt, pool)
			if err != nil {
				t.Fatal(err)
			}
			if res.Connected != 20 || res.WarmupDelivered != 20 || len(res.Steps) != 1 {
				t.Fatalf("connected %d warm-up %d steps %d errors %v", res.Connected, res.WarmupDelivered, len(res.Steps), res.ConnectErrors)
			}
			s := res.Steps[0]
			if s.PushesSent != 20 || s.PushErrors != 0 || s.Receivers != 20 {
				t.Fatalf("sent %d errors %d %v receivers %d", s.PushesSent, s.PushErrors, s.PushErrorKinds, s.Receivers)
			}
			if s.Expected != 400 || s.Delivered != 400 || s.Loss != 0 || s.Duplicates != 0 || s.ClosedByServer != 0 {
				t.Fatalf("expected %d delivered %d loss %d duplicates %d closed %d disconnects %v",
					s.Expected, s.Delivered, s.Loss, s.Duplicates, s.ClosedByServer, s.Disconnects)
			}
			if s.Latency.Count != 400 || s.Latency.P50US <= 0 || s.DeliveriesPerSec <= 0 {
				t.Fatalf("latency %+v deliveries/s %v", s.Latency, s.DeliveriesPerSec)
			}
		})
	}
}

package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/goimdev/goim/benchmarks/suite"
	"github.com/goimdev/goim/internal/config"
)

// Two one-process servers sharing a JWT secret (and the same seeded user
// ids) stand in for two comets: conns spreads its connections over both
// (-addrs), sums the "server processes" (-pids, here this process twice)
// and holds the connections with heartbeats (-hold) without a drop.
func TestEndToEndConnsOverTwoServersWithHold(t *testing.T) {
	secret := suite.RandomSecret()
	shared := func(c *config.Config) { c.JWTSecret = secret }
	a, b := startInProcess(t, 40, shared), startInProcess(t, 40, shared)
	tgt := a
	tgt.TCPAddrs = []string{a.TCPAddr, b.TCPAddr}
	tgt.PIDs = []int{os.Getpid(), os.Getpid()}
	pool := newPool(t, 2)
	ctx := context.Background()
	run, err := suite.RunConns(ctx, suite.ConnsConfig{N: 40, Rate: 500, Settle: time.Second, Samples: 1, Hold: 2 * time.Second}, tgt, pool)
	if err != nil {
		t.Fatal(err)
	}
	if run.Connected != 40 || run.Failed != 0 || run.HoldDrops != 0 || run.HoldOpen != 40 || run.HoldSeconds <= 0 {
		t.Fatalf("connected %d failed %d, hold %.1fs: drops %d open %d (errors %v)",
			run.Connected, run.Failed, run.HoldSeconds, run.HoldDrops, run.HoldOpen, run.Errors)
	}
	if len(run.RSSByPIDBytes) != 2 || run.HoldRSSBytes <= 0 {
		t.Fatalf("RSS by process %v, after hold %d", run.RSSByPIDBytes, run.HoldRSSBytes)
	}
	if notes := run.Check(); len(notes) != 0 {
		t.Fatalf("notes: %q", notes)
	}
	if _, err := pool.CloseConns(ctx); err != nil {
		t.Fatal(err)
	}
}

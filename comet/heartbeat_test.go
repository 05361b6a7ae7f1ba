package comet

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// batchLogic is a fakeLogic that takes heartbeats in batches.
type batchLogic struct {
	*fakeLogic
	mu      sync.Mutex
	batches [][]ConnRef
}

func (b *batchLogic) Heartbeats(ctx context.Context, server string, conns []ConnRef) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches = append(b.batches, append([]ConnRef(nil), conns...))
	return nil
}

func (b *batchLogic) refs() []ConnRef {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ConnRef
	for _, bt := range b.batches {
		out = append(out, bt...)
	}
	return out
}

// With a Logic that takes heartbeats in batches, the readers only collect
// the refreshes; they reach logic together, once per flush, and
// Logic.Heartbeat is not called.
func TestHeartbeatsBatched(t *testing.T) {
	const interval = time.Minute
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	logic := &batchLogic{fakeLogic: &fakeLogic{heartbeat: interval}}
	cfg := testConfig()
	cfg.HeartbeatFlush = 20 * time.Millisecond
	s := startServerWith(t, cfg, logic, func(s *Server) { s.wallNow = clock.Load })
	var cs []*client
	for i, tr := range []string{transportTCP, transportWS, transportTCP} {
		c := dial(t, s, tr)
		c.auth("uid:"+string(rune('1'+i)), "hb-"+string(rune('a'+i)), "")
		cs = append(cs, c)
	}
	clock.Add(int64(interval))
	for _, c := range cs {
		c.heartbeat()
	}
	waitFor(t, "three batched refreshes", func() bool { return len(logic.refs()) == 3 })
	keys := map[string]bool{}
	for _, r := range logic.refs() {
		if r.ConnID == "" || r.UserID == 0 {
			t.Fatalf("refresh %+v", r)
		}
		keys[r.Key] = true
	}
	if !keys["hb-a"] || !keys["hb-b"] || !keys["hb-c"] {
		t.Fatalf("refreshed keys %v", keys)
	}
	if _, _, hb := logic.connIDs(); len(hb) != 0 {
		t.Fatalf("Logic.Heartbeat called %d times with a batching logic", len(hb))
	}
}

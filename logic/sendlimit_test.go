package logic

import (
	"testing"
	"time"
)

func TestTokenLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newTokenLimiter(2, 3) // 2/s, burst 3
	tests := []struct {
		user int64
		at   time.Duration
		want bool
	}{
		{1, 0, true}, {1, 0, true}, {1, 0, true}, {1, 0, false}, // the burst, then empty
		{2, 0, true},                       // other users have their own bucket
		{1, 400 * time.Millisecond, false}, // 0.8 token
		{1, 500 * time.Millisecond, true},  // 1 token
		{1, 500 * time.Millisecond, false},
		{1, time.Hour, true}, {1, time.Hour, true}, {1, time.Hour, true}, {1, time.Hour, false}, // refilled to the burst only
		{1, time.Hour - time.Second, false}, // a clock going back adds nothing
	}
	for i, tt := range tests {
		if got := l.allow(tt.user, t0.Add(tt.at)); got != tt.want {
			t.Fatalf("step %d: allow(%d, +%v) = %v, want %v", i, tt.user, tt.at, got, tt.want)
		}
	}
	// Sweep: full buckets are dropped, the others kept.
	sh := &l.shards[0]
	for u := int64(0); u < minSweep*limiterShards; u += limiterShards {
		l.allow(u, t0)
	}
	l.allow(limiterShards*minSweep*2, t0.Add(10*time.Second)) // triggers a sweep of shard 0
	if n := len(sh.buckets); n > 2 {
		t.Fatalf("%d buckets after the sweep, want the new one only", n)
	}
}

func TestIntervalLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newIntervalLimiter(2 * time.Second)
	tests := []struct {
		user int64
		conv string
		at   time.Duration
		want bool
	}{
		{1, "p_1_2", 0, true},
		{1, "p_1_2", time.Second, false},
		{1, "g_3", time.Second, true},   // per conversation
		{2, "p_1_2", time.Second, true}, // per user
		{1, "p_1_2", 2 * time.Second, true},
		{1, "p_1_2", 3 * time.Second, false},
	}
	for i, tt := range tests {
		if got := l.allow(tt.user, tt.conv, t0.Add(tt.at)); got != tt.want {
			t.Fatalf("step %d: allow(%d, %s, +%v) = %v, want %v", i, tt.user, tt.conv, tt.at, got, tt.want)
		}
	}
}

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/goimdev/goim/benchmarks/suite"
	"github.com/goimdev/goim/internal/config"
)

// noSendLimit lifts the per-user send rate limit, as the goim-bench
// messaging commands do for the server they start.
func noSendLimit(c *config.Config) { c.Logic.SendRate = -1 }

func TestEndToEndChat(t *testing.T) {
	tests := []struct {
		name string
		rate float64
	}{
		{"closed loop", 0},
		{"open loop", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tgt := startInProcess(t, 20, noSendLimit)
			res, err := suite.RunChat(context.Background(), suite.ChatConfig{Pairs: 10, Rate: tt.rate, InFlight: 2,
				Duration: time.Second, Drain: 20 * time.Second, Quiet: 10 * time.Second}, tgt)
			if err != nil {
				t.Fatal(err)
			}
			s := res.Stats
			if res.Connected != 20 || s.Sent == 0 || s.Senders != 10 {
				t.Fatalf("connected %d sent %d senders %d", res.Connected, s.Sent, s.Senders)
			}
			if s.Acked != s.Sent || s.Unacked != 0 || s.Refused != 0 || s.Lost != 0 || s.Delivered != s.Acked || s.Expected != s.Acked {
				t.Fatalf("sent %d acked %d unacked %d refused %d %v expected %d delivered %d lost %d",
					s.Sent, s.Acked, s.Unacked, s.Refused, s.RefusedCodes, s.Expected, s.Delivered, s.Lost)
			}
			if s.Duplicates != 0 || s.UnknownEvents != 0 || s.ClosedByServer != 0 {
				t.Fatalf("duplicates %d unknown %d closed %d", s.Duplicates, s.UnknownEvents, s.ClosedByServer)
			}
			if s.AckLatency.Count != uint64(s.Acked) || s.E2ELatency.Count != uint64(s.Delivered) || s.AckedPerSec <= 0 || s.DeliveredPerSec <= 0 {
				t.Fatalf("ack latency %+v e2e %+v acked/s %v delivered/s %v", s.AckLatency, s.E2ELatency, s.AckedPerSec, s.DeliveredPerSec)
			}
			if notes := res.Check(); len(notes) != 0 {
				t.Fatalf("notes: %q", notes)
			}
		})
	}
}

func TestEndToEndGroup(t *testing.T) {
	tgt := startInProcess(t, 12, noSendLimit)
	res, err := suite.RunGroup(context.Background(), suite.GroupConfig{Members: 12, Senders: 3, InFlight: 2,
		Duration: time.Second, Drain: 20 * time.Second, Quiet: 10 * time.Second}, tgt)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Stats
	if res.GroupID == 0 || res.Connected != 12 || s.Sent == 0 || s.Receivers != 11 {
		t.Fatalf("group %d connected %d sent %d receivers %d", res.GroupID, res.Connected, s.Sent, s.Receivers)
	}
	if s.Acked != s.Sent || s.Expected != 11*s.Acked || s.Delivered != s.Expected || s.Lost != 0 || s.Duplicates != 0 {
		t.Fatalf("sent %d acked %d refused %v expected %d delivered %d lost %d dups %d",
			s.Sent, s.Acked, s.RefusedCodes, s.Expected, s.Delivered, s.Lost, s.Duplicates)
	}
}

func TestEndToEndHistory(t *testing.T) {
	tgt := startInProcess(t, 6, noSendLimit)
	res, err := suite.RunHistory(context.Background(), suite.HistoryConfig{Conversations: 3, Messages: 120, Hot: 1,
		Readers: 4, PageSize: 50, Duration: 500 * time.Millisecond}, tgt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Seed.Acked != 360 || res.Seed.Lost != 0 {
		t.Fatalf("seed acked %d lost %d", res.Seed.Acked, res.Seed.Lost)
	}
	if res.Reads == 0 || len(res.ReadErrors) != 0 || res.ShortPages != 0 || res.Latency.Count != uint64(res.Reads) {
		t.Fatalf("reads %d errors %v short %d latency %+v", res.Reads, res.ReadErrors, res.ShortPages, res.Latency)
	}
	// The server's recent-message cache reports its hits and misses
	// (goim_msgcache_lookups_total).
	if res.HotLatency.Count+res.ColdLatency.Count != res.Latency.Count || res.CacheHitRatio < 0 || res.CacheHitRatio > 1 {
		t.Fatalf("hot %d cold %d all %d cache %v", res.HotLatency.Count, res.ColdLatency.Count, res.Latency.Count, res.CacheHitRatio)
	}
}

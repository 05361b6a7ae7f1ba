package sqlite

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/storetest"
)

// Config.Synchronous reaches every connection (the driver sorts its
// _pragma values, so a second synchronous pragma would silently win).
func TestConfigSynchronous(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		cfg  string
		want int
	}{{"", 1}, {"normal", 1}, {"FULL", 2}} {
		s, err := OpenConfig(ctx, filepath.Join(t.TempDir(), "goim.db"), Config{Synchronous: tt.cfg})
		if err != nil {
			t.Fatalf("OpenConfig(%q): %v", tt.cfg, err)
		}
		var w, r int
		if err := s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&w); err != nil {
			t.Fatal(err)
		}
		if err := s.r.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&r); err != nil {
			t.Fatal(err)
		}
		if w != tt.want || r != tt.want {
			t.Errorf("Synchronous %q: writer %d, reader %d; want %d", tt.cfg, w, r, tt.want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := OpenConfig(ctx, filepath.Join(t.TempDir(), "goim.db"), Config{Synchronous: "OFF"}); err == nil {
		s.Close()
		t.Fatal(`OpenConfig(Synchronous "OFF") succeeded`)
	}
}

// The background checkpointer copies committed frames into the database
// file, after CheckpointAfter messages or after CheckpointInterval, while
// the store stays usable, and stops at Close.
func TestBackgroundCheckpoint(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"after messages": {CheckpointAfter: 100, CheckpointInterval: time.Hour},
		"interval":       {CheckpointAfter: 1 << 30, CheckpointInterval: 5 * time.Millisecond},
	} {
		s, err := OpenConfig(ctx, filepath.Join(t.TempDir(), "goim.db"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for r := range 4 {
			if _, err := s.AppendMessages(ctx, benchBatch(64, 10, r)); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for s.ckpt.checkpointed.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no frame checkpointed after 10s (%d runs, %d frames)", name, s.ckpt.runs.Load(), s.ckpt.frames.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
		msgs, _, err := s.Messages(ctx, store.PairConversationID(1, 2), 0, 0, 100)
		if err != nil || len(msgs) != 4*64/10+1 {
			t.Fatalf("%s: Messages = %d messages, %v", name, len(msgs), err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("%s: Close: %v", name, err)
		}
	}
	// Without a background checkpointer.
	s2, err := OpenConfig(ctx, filepath.Join(t.TempDir(), "goim.db"), Config{CheckpointAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.ckpt != nil {
		t.Fatal("CheckpointAfter -1 started a checkpointer")
	}
	if _, err := s2.AppendMessages(ctx, []*store.Message{storetest.PairMsg(1, 2, "a", "x")}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCommitLatency measures small commits (8 messages, as under a
// steady moderate send rate) with the writer checkpointing by itself at
// 10000 WAL pages (the configuration before the background checkpointer)
// and with the defaults, and reports their latency percentiles: the
// writer's own checkpoint shows in the tail.
func BenchmarkCommitLatency(b *testing.B) {
	for name, cfg := range map[string]Config{
		"writer-checkpoints": {CheckpointAfter: -1, WALAutocheckpoint: 10000},
		"background":         {},
	} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s, err := OpenConfig(ctx, filepath.Join(b.TempDir(), "goim.db"), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for r := range 100 { // 51,200 messages in 500 conversations first
				if _, err := s.AppendMessages(ctx, benchBatch(512, 500, r)); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := s.AppendMessages(ctx, benchBatch(8, 500, 1000+i)); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			n := len(lat)
			b.ReportMetric(float64(8*n)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(lat[n/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[n*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[n*999/1000].Microseconds()), "p99.9-µs")
		})
	}
}

package bus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/bus/bustest"
)

func newMemory(t *testing.T, cfg bus.MemoryConfig) *bus.Memory {
	m := bus.NewMemory(cfg)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestMemoryConformance(t *testing.T) {
	configs := []struct {
		name string
		cfg  bus.MemoryConfig
	}{
		{"default", bus.MemoryConfig{RetryBackoff: time.Millisecond}},
		{"one_partition_small", bus.MemoryConfig{Partitions: 1, MaxBatch: 3, QueueSize: 16, RetryBackoff: time.Millisecond}},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			bustest.Run(t, func(t *testing.T) bus.Bus { return newMemory(t, c.cfg) })
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMemoryRetainsBeforeSubscribe(t *testing.T) {
	tests := []struct {
		name      string
		queue     int
		publish   int
		wantFirst int // first seq received
	}{
		{"within_bound", 100, 50, 0},
		{"beyond_bound_drops_oldest", 10, 25, 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemory(t, bus.MemoryConfig{Partitions: 1, QueueSize: tc.queue})
			for i := range tc.publish {
				if err := m.Publish(context.Background(), bus.Message{Topic: "t", Key: "k", Value: []byte{byte(i)}}); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			var got []int
			err := m.Subscribe(t.Context(), "t", "g", func(_ context.Context, msgs []bus.Message) error {
				mu.Lock()
				defer mu.Unlock()
				for _, msg := range msgs {
					got = append(got, int(msg.Value[0]))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := tc.publish - tc.wantFirst
			waitFor(t, "retained messages", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) == want
			})
			mu.Lock()
			defer mu.Unlock()
			for i, v := range got {
				if v != tc.wantFirst+i {
					t.Fatalf("got[%d] = %d, want %d (all %v)", i, v, tc.wantFirst+i, got)
				}
			}
		})
	}
}

func TestMemoryBackpressure(t *testing.T) {
	m := newMemory(t, bus.MemoryConfig{Partitions: 1, QueueSize: 4, MaxBatch: 1})
	release := make(chan struct{})
	var delivered atomic.Int32
	err := m.Subscribe(t.Context(), "t", "g", func(ctx context.Context, msgs []bus.Message) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		delivered.Add(int32(len(msgs)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := m.Publish(context.Background(), bus.Message{Topic: "t", Key: "k", Value: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// The partition is full and its group is stuck: Publish waits and
	// honours ctx, rather than dropping.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Publish(ctx, bus.Message{Topic: "t", Key: "k", Value: []byte{4}}) }()
	select {
	case err := <-errc:
		t.Fatalf("Publish on a full partition returned %v instead of waiting", err)
	default:
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish: %v, want context.Canceled", err)
	}
	// Once the consumer commits, a waiting Publish goes through.
	go func() { errc <- m.Publish(context.Background(), bus.Message{Topic: "t", Key: "k", Value: []byte{5}}) }()
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all delivered", func() bool { return delivered.Load() == 5 })
}

func TestMemoryGroupActive(t *testing.T) {
	m := newMemory(t, bus.MemoryConfig{})
	h := func(context.Context, []bus.Message) error { return nil }
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Subscribe(ctx, "t", "g", h); err != nil {
		t.Fatal(err)
	}
	if err := m.Subscribe(context.Background(), "t", "g", h); !errors.Is(err, bus.ErrGroupActive) {
		t.Fatalf("second Subscribe: %v, want ErrGroupActive", err)
	}
	if err := m.Subscribe(context.Background(), "other", "g", h); err != nil {
		t.Fatalf("same group on another topic: %v", err)
	}
	cancel()
	// Once the first subscription stopped, the group may subscribe again.
	waitFor(t, "resubscribe", func() bool {
		err := m.Subscribe(t.Context(), "t", "g", h)
		return err == nil
	})
}

func TestMemoryValidation(t *testing.T) {
	m := newMemory(t, bus.MemoryConfig{})
	h := func(context.Context, []bus.Message) error { return nil }
	tests := []struct {
		name string
		err  error
	}{
		{"publish_empty_topic", m.Publish(context.Background(), bus.Message{Key: "k"})},
		{"subscribe_empty_topic", m.Subscribe(context.Background(), "", "g", h)},
		{"subscribe_empty_group", m.Subscribe(context.Background(), "t", "", h)},
		{"subscribe_nil_handler", m.Subscribe(context.Background(), "t", "g", nil)},
	}
	for _, tc := range tests {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestMemoryEmptyKeysSpread(t *testing.T) {
	m := newMemory(t, bus.MemoryConfig{Partitions: 4})
	var mu sync.Mutex
	total := 0
	err := m.Subscribe(t.Context(), "t", "g", func(ctx context.Context, msgs []bus.Message) error {
		mu.Lock()
		total += len(msgs)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 400 {
		if err := m.Publish(context.Background(), bus.Message{Topic: "t", Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return total == 400
	})
}

func BenchmarkMemoryPublishConsume(b *testing.B) {
	m := bus.NewMemory(bus.MemoryConfig{})
	defer m.Close()
	var got atomic.Int64
	if err := m.Subscribe(context.Background(), "t", "g", func(_ context.Context, msgs []bus.Message) error {
		got.Add(int64(len(msgs)))
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	val := make([]byte, 128)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := m.Publish(context.Background(), bus.Message{Topic: "t", Key: keys[i%len(keys)], Value: val}); err != nil {
			b.Fatal(err)
		}
	}
	for got.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
}

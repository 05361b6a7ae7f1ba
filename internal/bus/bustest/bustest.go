// Package bustest is the conformance suite every bus.Bus implementation
// runs: the in-process bus in its own tests, Kafka where a broker (or kfake)
// is reachable.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/bus"
)

// Timeout bounds every wait of the suite.
var Timeout = 20 * time.Second

var topicSeq atomic.Int64

// uniqueTopic returns a topic name no other test uses, so that a shared
// broker needs no cleanup between runs.
func uniqueTopic(t *testing.T) string {
	name := strings.NewReplacer("/", "-", " ", "-", "#", "-").Replace(t.Name())
	return fmt.Sprintf("bustest-%s-%d-%d", name, time.Now().UnixNano(), topicSeq.Add(1))
}

// waitFor polls cond until it holds or Timeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recorder collects delivered messages.
type recorder struct {
	mu      sync.Mutex
	msgs    []bus.Message
	batches [][]bus.Message
}

func (r *recorder) handle(_ context.Context, msgs []bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	r.batches = append(r.batches, append([]bus.Message(nil), msgs...))
	return nil
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// distinct returns the number of distinct values received.
func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool, len(r.msgs))
	for _, m := range r.msgs {
		seen[string(m.Value)] = true
	}
	return len(seen)
}

func (r *recorder) snapshot() []bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Message(nil), r.msgs...)
}

// value is "key/seq".
func value(key string, seq int) []byte { return []byte(key + "/" + strconv.Itoa(seq)) }

func parseValue(t *testing.T, v []byte) (string, int) {
	t.Helper()
	k, s, ok := strings.Cut(string(v), "/")
	if !ok {
		t.Fatalf("unexpected value %q", v)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("unexpected value %q", v)
	}
	return k, n
}

// checkOrder asserts that, for every key, the first deliveries of its
// messages are 0..n-1 in order (redeliveries may repeat earlier ones).
func checkOrder(t *testing.T, msgs []bus.Message, keys []string, n int) {
	t.Helper()
	next := make(map[string]int, len(keys))
	for _, m := range msgs {
		k, s := parseValue(t, m.Value)
		if m.Key != k {
			t.Fatalf("message key %q does not match its value %q", m.Key, m.Value)
		}
		switch {
		case s == next[k]:
			next[k]++
		case s > next[k]:
			t.Fatalf("key %q: got seq %d before seq %d", k, s, next[k])
		}
	}
	for _, k := range keys {
		if next[k] != n {
			t.Fatalf("key %q: got %d messages, want %d", k, next[k], n)
		}
	}
}

func publishAll(t *testing.T, b bus.Bus, topic string, keys []string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		msgs := make([]bus.Message, 0, len(keys))
		for _, k := range keys {
			msgs = append(msgs, bus.Message{Topic: topic, Key: k, Value: value(k, i)})
		}
		if err := b.Publish(ctx, msgs...); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
}

// Run runs the conformance suite. newBus returns a fresh bus; the suite
// closes it (Close must be idempotent, the factory may close it again in a
// cleanup). The bus must buffer at least 16 messages per partition without
// blocking Publish, and redeliver a failed batch within Timeout.
func Run(t *testing.T, newBus func(t *testing.T) bus.Bus) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b bus.Bus)
	}{
		{"PerKeyOrder", testPerKeyOrder},
		{"EveryGroup", testEveryGroup},
		{"RedeliverAfterError", testRedeliver},
		{"Batching", testBatching},
		{"CloseStopsConsumers", testCloseStops},
		{"SubscribeCtxCancel", testSubscribeCancel},
		{"PublishCtxCancelled", testPublishCancelled},
		{"AfterClose", testAfterClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t)
			defer b.Close()
			tc.fn(t, b)
		})
	}
}

func testPerKeyOrder(t *testing.T, b bus.Bus) {
	topic := uniqueTopic(t)
	var r recorder
	if err := b.Subscribe(t.Context(), topic, "g1", r.handle); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	const n = 200
	var wg sync.WaitGroup
	// Different keys published concurrently; each key from one goroutine.
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := b.Publish(context.Background(), bus.Message{Topic: topic, Key: k, Value: value(k, i)}); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "all messages", func() bool { return r.distinct() == len(keys)*n })
	checkOrder(t, r.snapshot(), keys, n)
}

func testEveryGroup(t *testing.T, b bus.Bus) {
	topic := uniqueTopic(t)
	var r1, r2 recorder
	if err := b.Subscribe(t.Context(), topic, "g1", r1.handle); err != nil {
		t.Fatalf("Subscribe g1: %v", err)
	}
	if err := b.Subscribe(t.Context(), topic, "g2", r2.handle); err != nil {
		t.Fatalf("Subscribe g2: %v", err)
	}
	keys := []string{"x", "y", "z"}
	const n = 100
	publishAll(t, b, topic, keys, n)
	waitFor(t, "group 1", func() bool { return r1.distinct() == len(keys)*n })
	waitFor(t, "group 2", func() bool { return r2.distinct() == len(keys)*n })
	checkOrder(t, r1.snapshot(), keys, n)
	checkOrder(t, r2.snapshot(), keys, n)
	for _, m := range r1.snapshot() {
		if m.Topic != topic {
			t.Fatalf("message topic %q, want %q", m.Topic, topic)
		}
	}
}

func testRedeliver(t *testing.T, b bus.Bus) {
	topic := uniqueTopic(t)
	type call struct {
		values []string
		failed bool
	}
	var (
		mu       sync.Mutex
		calls    []call
		failures int
		all      []bus.Message
	)
	h := func(_ context.Context, msgs []bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		c := call{}
		for _, m := range msgs {
			c.values = append(c.values, string(m.Value))
			all = append(all, m)
		}
		// Fail the first two deliveries of the batch holding k/3.
		for _, v := range c.values {
			if v == "k/3" && failures < 2 {
				failures++
				c.failed = true
			}
		}
		calls = append(calls, c)
		if c.failed {
			return errors.New("bustest: induced failure")
		}
		return nil
	}
	if err := b.Subscribe(t.Context(), topic, "g", h); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	const n = 10
	publishAll(t, b, topic, []string{"k"}, n)
	waitFor(t, "redelivery and all messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if failures < 2 || len(calls) == 0 {
			return false
		}
		last := calls[len(calls)-1]
		return !last.failed && last.values[len(last.values)-1] == "k/9"
	})
	mu.Lock()
	defer mu.Unlock()
	checkOrder(t, all, []string{"k"}, n)
	for i, c := range calls {
		if !c.failed {
			continue
		}
		if i+1 >= len(calls) {
			t.Fatalf("no delivery after failed call %d", i)
		}
		// Redelivery restarts at the failed batch: nothing of it was committed.
		if got, want := calls[i+1].values[0], c.values[0]; got != want {
			t.Fatalf("after a failed batch starting at %s the next batch starts at %s", want, got)
		}
	}
}

func testBatching(t *testing.T, b bus.Bus) {
	topic := uniqueTopic(t)
	release := make(chan struct{})
	var (
		mu       sync.Mutex
		calls    int
		maxBatch int
		total    int
	)
	h := func(ctx context.Context, msgs []bus.Message) error {
		mu.Lock()
		calls++
		first := calls == 1
		maxBatch = max(maxBatch, len(msgs))
		total += len(msgs)
		mu.Unlock()
		if first {
			select { // hold the partition while the rest is published
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	}
	if err := b.Subscribe(t.Context(), topic, "g", h); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := b.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: value("k", 0)}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	waitFor(t, "first delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls == 1
	})
	const n = 10 // the bus must buffer this many behind a busy handler
	for i := 1; i <= n; i++ {
		if err := b.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: value("k", i)}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	close(release)
	waitFor(t, "all messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return total >= n+1
	})
	mu.Lock()
	defer mu.Unlock()
	if maxBatch < 2 {
		t.Fatalf("%d messages queued behind a busy handler came one per call", n)
	}
	if calls > n {
		t.Fatalf("%d handler calls for %d messages: no batching", calls, n+1)
	}
}

func testCloseStops(t *testing.T, b bus.Bus) {
	topic := uniqueTopic(t)
	var (
		entered   = make(chan struct{})
		once      sync.Once
		sawCancel atomic.Bool
		closed    atomic.Bool
		late      atomic.Int32
	)
	h := func(ctx context.Context, msgs []bus.Message) error {
		if closed.Load() {
			late.Add(1)
		}
		once.Do(func() { close(entered) })
		<-ctx.Done() // a long handler: Close must cancel it
		sawCancel.Store(true)
		return ctx.Err()
	}
	if err := b.Subscribe(context.Background(), topic, "g", h); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := b.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case <-entered:
	case <-time.After(Timeout):
		t.Fatal("handler not called")
	}
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(Timeout):
		t.Fatal("Close did not return while a handler ran")
	}
	closed.Store(true)
	if !sawCancel.Load() {
		t.Fatal("Close returned before the running handler saw its ctx cancelled")
	}
	if n := late.Load(); n != 0 {
		t.Fatalf("handler called %d times after Close returned", n)
	}
}

func testSubscribeCancel(t *testing.T, b bus.Bus) {
	topic := uniqueTopic(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		entered   = make(chan struct{})
		once      sync.Once
		sawCancel atomic.Bool
	)
	h := func(hctx context.Context, msgs []bus.Message) error {
		once.Do(func() { close(entered) })
		<-hctx.Done()
		sawCancel.Store(true)
		return hctx.Err()
	}
	if err := b.Subscribe(ctx, topic, "g", h); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	// Another group keeps consuming after the first one stops.
	var other recorder
	if err := b.Subscribe(t.Context(), topic, "other", other.handle); err != nil {
		t.Fatalf("Subscribe other: %v", err)
	}
	if err := b.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: value("k", 0)}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case <-entered:
	case <-time.After(Timeout):
		t.Fatal("handler not called")
	}
	cancel()
	waitFor(t, "handler ctx cancelled", sawCancel.Load)
	publishAll(t, b, topic, []string{"m"}, 20)
	waitFor(t, "the other group", func() bool { return other.distinct() == 21 })
}

func testPublishCancelled(t *testing.T, b bus.Bus) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Publish(ctx, bus.Message{Topic: uniqueTopic(t), Key: "k", Value: []byte("v")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a cancelled ctx: %v, want context.Canceled", err)
	}
}

func testAfterClose(t *testing.T, b bus.Bus) {
	topic := uniqueTopic(t)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: []byte("v")}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
	h := func(context.Context, []bus.Message) error { return nil }
	if err := b.Subscribe(context.Background(), topic, "g", h); err == nil {
		t.Fatal("Subscribe after Close succeeded")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

package bus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/bus/bustest"
	"github.com/goimdev/goim/internal/bus/kafkatest"
)

// testKafkaConfig is the bus config of the tests: fast redelivery.
func testKafkaConfig(brokers []string) bus.KafkaConfig {
	return bus.KafkaConfig{
		Brokers:      brokers,
		Partitions:   3,
		RetryBackoff: time.Millisecond,
	}
}

func newKafka(t testing.TB, cfg bus.KafkaConfig) *bus.Kafka {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	k, err := bus.NewKafka(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("NewKafka: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestKafkaConformance(t *testing.T) {
	bustest.Run(t, func(t *testing.T) bus.Bus {
		return newKafka(t, testKafkaConfig(kafkatest.Brokers(t, kafkatest.Options{})))
	})
}

// A consumer that stops in the middle of a batch (its handler never
// returned nil) leaves the batch uncommitted: the group's next consumer
// receives it again, and nothing that was committed before.
func TestKafkaCrashMidBatchRedelivers(t *testing.T) {
	for _, how := range []string{"close", "ctx_cancel"} {
		t.Run(how, func(t *testing.T) {
			brokers := kafkatest.Brokers(t, kafkatest.Options{})
			topic := bustest.UniqueTopic(t)
			pub := newKafka(t, testKafkaConfig(brokers))
			first := newKafka(t, testKafkaConfig(brokers))

			var (
				mu      sync.Mutex
				done    []string // values whose batch returned nil
				blocked = make(chan struct{})
				once    sync.Once
			)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := first.Subscribe(ctx, topic, "g", func(hctx context.Context, msgs []bus.Message) error {
				for _, m := range msgs {
					if _, seq := bustest.ParseValue(t, m.Value); seq >= 5 {
						once.Do(func() { close(blocked) })
						<-hctx.Done() // "crash" in the middle of this batch
						return hctx.Err()
					}
				}
				mu.Lock()
				for _, m := range msgs {
					done = append(done, string(m.Value))
				}
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			bustest.PublishAll(t, pub, topic, []string{"k"}, 5)
			bustest.WaitFor(t, "first five handled", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(done) == 5
			})
			for i := 5; i < 10; i++ {
				if err := pub.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: bustest.Value("k", i)}); err != nil {
					t.Fatalf("Publish: %v", err)
				}
			}
			select {
			case <-blocked:
			case <-time.After(bustest.Timeout):
				t.Fatal("second batch not delivered")
			}
			switch how {
			case "close":
				if err := first.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			case "ctx_cancel":
				cancel()
			}

			second := newKafka(t, testKafkaConfig(brokers))
			var r bustest.Recorder
			if err := second.Subscribe(t.Context(), topic, "g", r.Handle); err != nil {
				t.Fatalf("Subscribe second: %v", err)
			}
			bustest.WaitFor(t, "redelivery to the new consumer", func() bool { return r.Distinct() == 5 })
			got := r.Messages()
			for _, m := range got {
				if _, seq := bustest.ParseValue(t, m.Value); seq < 5 {
					t.Fatalf("committed message %s delivered again", m.Value)
				}
			}
			// Rebase seqs 5..9 to 0..4 to check their order.
			rebased := make([]bus.Message, len(got))
			for i, m := range got {
				_, seq := bustest.ParseValue(t, m.Value)
				rebased[i] = bus.Message{Key: m.Key, Value: bustest.Value(m.Key, seq-5)}
			}
			bustest.CheckOrder(t, rebased, []string{"k"}, 5)
		})
	}
}

// TestKafkaCommitsInBackgroundAndOnClose: a handled batch is not committed
// on the handling path (no OffsetCommit per batch), and Close commits every
// batch whose handler returned nil, including one that finished after the
// session's ctx ended (a draining job): the next member of the group
// receives none of them again.
func TestKafkaCommitsInBackgroundAndOnClose(t *testing.T) {
	cluster := kafkatest.NewCluster(t, kafkatest.Options{})
	var commits atomic.Int64
	cluster.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		commits.Add(1)
		return nil, nil, false // observe only
	})
	brokers := cluster.ListenAddrs()
	topic := bustest.UniqueTopic(t)
	pub := newKafka(t, testKafkaConfig(brokers))
	cfg := testKafkaConfig(brokers)
	cfg.CommitInterval = time.Hour // only the session's end commits
	first := newKafka(t, cfg)

	var (
		handled  atomic.Int64
		draining = make(chan struct{})
	)
	err := first.Subscribe(t.Context(), topic, "g", func(hctx context.Context, msgs []bus.Message) error {
		for _, m := range msgs {
			if _, seq := bustest.ParseValue(t, m.Value); seq == 20 {
				close(draining)
				<-hctx.Done() // finish the batch although the session ended
			}
		}
		handled.Add(int64(len(msgs)))
		return nil
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	for i := range 20 { // one at a time: many batches
		if err := pub.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: bustest.Value("k", i)}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	bustest.WaitFor(t, "twenty handled", func() bool { return handled.Load() == 20 })
	if n := commits.Load(); n != 0 {
		t.Fatalf("%d offset commits while handling, want none before the session ends", n)
	}
	if err := pub.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: bustest.Value("k", 20)}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case <-draining:
	case <-time.After(bustest.Timeout):
		t.Fatal("message 20 not delivered")
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if handled.Load() != 21 {
		t.Fatalf("handled %d, want 21", handled.Load())
	}
	if commits.Load() == 0 {
		t.Fatal("Close committed nothing")
	}

	second := newKafka(t, testKafkaConfig(brokers))
	var r bustest.Recorder
	if err := second.Subscribe(t.Context(), topic, "g", r.Handle); err != nil {
		t.Fatalf("Subscribe second: %v", err)
	}
	if err := pub.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: bustest.Value("k", 21)}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	bustest.WaitFor(t, "message 21 at the second member", func() bool { return r.Distinct() >= 1 })
	for _, m := range r.Messages() {
		if _, seq := bustest.ParseValue(t, m.Value); seq != 21 {
			t.Errorf("handled message %s delivered again", m.Value)
		}
	}
}

// Several groups read one topic of 3 partitions, one of them with two
// members (two buses, as two job processes): every group gets every
// message, in per-key order.
func TestKafkaGroupsAndPartitions(t *testing.T) {
	brokers := kafkatest.Brokers(t, kafkatest.Options{})
	topic := bustest.UniqueTopic(t)
	pub := newKafka(t, testKafkaConfig(brokers))
	var g1, g2 bustest.Recorder // g1 is shared by its two members
	for _, sub := range []struct {
		group string
		r     *bustest.Recorder
	}{{"g1", &g1}, {"g1", &g1}, {"g2", &g2}} {
		k := newKafka(t, testKafkaConfig(brokers))
		if err := k.Subscribe(t.Context(), topic, sub.group, sub.r.Handle); err != nil {
			t.Fatalf("Subscribe %s: %v", sub.group, err)
		}
	}
	keys := make([]string, 12)
	for i := range keys {
		keys[i] = fmt.Sprintf("conv-%d", i)
	}
	const n = 50
	var wg sync.WaitGroup
	for _, k := range keys { // each key from its own goroutine, all at once
		wg.Go(func() {
			for i := range n {
				if err := pub.Publish(context.Background(), bus.Message{Topic: topic, Key: k, Value: bustest.Value(k, i)}); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	bustest.WaitFor(t, "group g1", func() bool { return g1.Distinct() == len(keys)*n })
	bustest.WaitFor(t, "group g2", func() bool { return g2.Distinct() == len(keys)*n })
	bustest.CheckOrder(t, g1.Messages(), keys, n)
	bustest.CheckOrder(t, g2.Messages(), keys, n)
}

// Members join and leave a group while messages flow (rebalances): every
// message is still delivered, in per-key order. The second half is
// published after the first member left, so the second member must take
// over its partitions.
func TestKafkaRebalanceWhilePublishing(t *testing.T) {
	brokers := kafkatest.Brokers(t, kafkatest.Options{})
	topic := bustest.UniqueTopic(t)
	cfg := testKafkaConfig(brokers)
	cfg.SessionTimeout = 6 * time.Second // kfake's minimum
	cfg.HeartbeatInterval = 100 * time.Millisecond
	pub := newKafka(t, cfg)
	var r bustest.Recorder // shared by the members, in arrival order
	subscribe := func(got *atomic.Int64) *bus.Kafka {
		k := newKafka(t, cfg)
		err := k.Subscribe(t.Context(), topic, "g", func(ctx context.Context, msgs []bus.Message) error {
			got.Add(int64(len(msgs)))
			return r.Handle(ctx, msgs)
		})
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		return k
	}
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	const n = 300
	var (
		published atomic.Int64
		wg        sync.WaitGroup
		half      sync.WaitGroup
		gate      = make(chan struct{})
	)
	half.Add(len(keys))
	for _, k := range keys {
		wg.Go(func() {
			for i := range n {
				if i == n/2 {
					half.Done()
					<-gate
				}
				if err := pub.Publish(context.Background(), bus.Message{Topic: topic, Key: k, Value: bustest.Value(k, i)}); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				published.Add(1)
			}
		})
	}
	var got1, got2 atomic.Int64
	first := subscribe(&got1)
	bustest.WaitFor(t, "first deliveries", func() bool { return got1.Load() > 0 })
	bustest.WaitFor(t, "a quarter published", func() bool { return published.Load() >= int64(len(keys)*n/4) })
	second := subscribe(&got2) // joins while messages flow: rebalance
	half.Wait()
	if err := first.Close(); err != nil { // leaves: rebalance
		t.Fatalf("Close: %v", err)
	}
	close(gate)
	wg.Wait()
	bustest.WaitFor(t, "all messages", func() bool { return r.Distinct() == len(keys)*n })
	bustest.CheckOrder(t, r.Messages(), keys, n)
	if got2.Load() == 0 {
		t.Fatal("the second member received nothing")
	}
	second.Close()
}

// Close while publishers run: every Publish returns nil (acknowledged,
// then readable by a group) or ErrClosed / not at all published; none hangs.
func TestKafkaCloseWhilePublishing(t *testing.T) {
	brokers := kafkatest.Brokers(t, kafkatest.Options{})
	topic := bustest.UniqueTopic(t)
	k := newKafka(t, testKafkaConfig(brokers))
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
		sent  atomic.Int64
	)
	for p := range 16 {
		wg.Go(func() {
			key := fmt.Sprintf("p%d", p)
			for i := 0; ; i++ {
				v := bustest.Value(key, i)
				err := k.Publish(context.Background(), bus.Message{Topic: topic, Key: key, Value: v})
				if errors.Is(err, bus.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				mu.Lock()
				acked[string(v)] = true
				mu.Unlock()
				sent.Add(1)
			}
		})
	}
	bustest.WaitFor(t, "some publishes", func() bool { return sent.Load() >= 200 })
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()

	reader := newKafka(t, testKafkaConfig(brokers))
	var r bustest.Recorder
	if err := reader.Subscribe(t.Context(), topic, "reader", r.Handle); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	bustest.WaitFor(t, "every acknowledged message", func() bool {
		seen := map[string]bool{}
		for _, m := range r.Messages() {
			seen[string(m.Value)] = true
		}
		for v := range acked {
			if !seen[v] {
				return false
			}
		}
		return true
	})
}

// Publishing many messages in one call keeps their order per key and
// returns once all are acknowledged.
func TestKafkaPublishBatchOrder(t *testing.T) {
	brokers := kafkatest.Brokers(t, kafkatest.Options{})
	topic := bustest.UniqueTopic(t)
	k := newKafka(t, testKafkaConfig(brokers))
	var r bustest.Recorder
	if err := k.Subscribe(t.Context(), topic, "g", r.Handle); err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "b", "c", "d"}
	const n = 300
	msgs := make([]bus.Message, 0, len(keys)*n)
	for i := range n {
		for _, key := range keys {
			msgs = append(msgs, bus.Message{Topic: topic, Key: key, Value: bustest.Value(key, i)})
		}
	}
	if err := k.Publish(context.Background(), msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	bustest.WaitFor(t, "all", func() bool { return r.Distinct() == len(msgs) })
	bustest.CheckOrder(t, r.Messages(), keys, n)
}

// A message Kafka refuses fails its Publish call; the bus stays usable.
func TestKafkaPublishTooLarge(t *testing.T) {
	cfg := testKafkaConfig(kafkatest.Brokers(t, kafkatest.Options{}))
	cfg.MaxMessageBytes = 1000
	k := newKafka(t, cfg)
	topic := bustest.UniqueTopic(t)
	err := k.Publish(context.Background(),
		bus.Message{Topic: topic, Key: "k", Value: []byte("small")},
		bus.Message{Topic: topic, Key: "k", Value: make([]byte, 2000)})
	if err == nil {
		t.Fatal("Publish of an oversized message succeeded")
	}
	if err := k.Publish(context.Background(), bus.Message{Topic: topic, Key: "k", Value: []byte("after")}); err != nil {
		t.Fatalf("Publish after a failure: %v", err)
	}
}

func TestKafkaConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  bus.KafkaConfig
	}{
		{"no_brokers", bus.KafkaConfig{}},
		{"old_version", bus.KafkaConfig{Brokers: []string{"127.0.0.1:1"}, Version: "0.10.2.0"}},
		{"bad_version", bus.KafkaConfig{Brokers: []string{"127.0.0.1:1"}, Version: "x"}},
		{"bad_compression", bus.KafkaConfig{Brokers: []string{"127.0.0.1:1"}, Compression: "brotli"}},
		{"bad_offset", bus.KafkaConfig{Brokers: []string{"127.0.0.1:1"}, InitialOffset: "middle"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := bus.NewKafka(context.Background(), tc.cfg, nil)
			if err == nil {
				k.Close()
				t.Fatal("NewKafka succeeded")
			}
		})
	}
}

func TestKafkaUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	k, err := bus.NewKafka(ctx, bus.KafkaConfig{Brokers: []string{addr}}, nil)
	if err == nil {
		k.Close()
		t.Fatal("NewKafka with no broker succeeded")
	}
}

// BenchmarkKafkaPublish measures acknowledged publishes of one 200-byte
// message per call against kfake, by 1 and by 64 concurrent publishers
// (each with its own key): concurrent calls share produce requests.
func BenchmarkKafkaPublish(b *testing.B) {
	for _, publishers := range []int{1, 64} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			k := newKafka(b, bus.KafkaConfig{Brokers: kafkatest.Brokers(b, kafkatest.Options{}), Partitions: 8})
			topic := fmt.Sprintf("bench-publish-%d", time.Now().UnixNano())
			val := make([]byte, 200)
			if err := k.Publish(context.Background(), bus.Message{Topic: topic, Key: "warm", Value: val}); err != nil {
				b.Fatal(err)
			}
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(max(1, publishers/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			publish := func(pb *testing.PB) {
				key := fmt.Sprintf("conv-%d", seq.Add(1))
				for pb.Next() {
					if err := k.Publish(context.Background(), bus.Message{Topic: topic, Key: key, Value: val}); err != nil {
						b.Error(err)
						return
					}
				}
			}
			if publishers == 1 {
				for b.Loop() {
					if err := k.Publish(context.Background(), bus.Message{Topic: topic, Key: "conv", Value: val}); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.RunParallel(publish)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkKafkaConsume measures one group member draining b.N 200-byte
// messages already in 8 partitions of kfake (handler does nothing;
// every batch committed).
func BenchmarkKafkaConsume(b *testing.B) {
	k := newKafka(b, bus.KafkaConfig{Brokers: kafkatest.Brokers(b, kafkatest.Options{}), Partitions: 8})
	topic := fmt.Sprintf("bench-consume-%d", time.Now().UnixNano())
	val := make([]byte, 200)
	var (
		got   atomic.Int64
		warm  = make(chan struct{})
		gate  = make(chan struct{})
		once  sync.Once
		calls atomic.Int64
	)
	err := k.Subscribe(context.Background(), topic, "bench", func(ctx context.Context, msgs []bus.Message) error {
		once.Do(func() { close(warm) })
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		calls.Add(1)
		got.Add(int64(len(msgs)))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := k.Publish(context.Background(), bus.Message{Topic: topic, Key: "warm", Value: val}); err != nil {
		b.Fatal(err)
	}
	<-warm
	// Publish b.N messages in calls of 1000 while the handler is held.
	const chunk = 1000
	msgs := make([]bus.Message, 0, chunk)
	for i := 0; i < b.N; i++ {
		msgs = append(msgs, bus.Message{Topic: topic, Key: fmt.Sprintf("conv-%d", i%512), Value: val})
		if len(msgs) == chunk || i == b.N-1 {
			if err := k.Publish(context.Background(), msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	close(gate)
	for got.Load() < int64(b.N)+1 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(got.Load())/float64(calls.Load()), "msgs/batch")
}

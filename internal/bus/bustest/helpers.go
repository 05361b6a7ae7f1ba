package bustest

import (
	"context"
	"testing"

	"github.com/goimdev/goim/internal/bus"
)

// Recorder collects delivered messages for implementation-specific tests;
// its Handle method is a bus.Handler that always succeeds. The zero value
// is ready; one Recorder may serve several consumers (arrival order kept).
type Recorder struct{ r recorder }

// Handle records msgs.
func (r *Recorder) Handle(ctx context.Context, msgs []bus.Message) error {
	return r.r.handle(ctx, msgs)
}

// Len returns the number of messages received, redeliveries included.
func (r *Recorder) Len() int { return r.r.len() }

// Distinct returns the number of distinct values received.
func (r *Recorder) Distinct() int { return r.r.distinct() }

// Messages returns the messages received, in arrival order.
func (r *Recorder) Messages() []bus.Message { return r.r.snapshot() }

// Value returns the suite's message value for seq of key ("key/seq").
func Value(key string, seq int) []byte { return value(key, seq) }

// ParseValue splits a value made by Value.
func ParseValue(t *testing.T, v []byte) (key string, seq int) { return parseValue(t, v) }

// CheckOrder asserts that for every key the first deliveries of its values
// are seq 0..n-1 in order (redeliveries may repeat earlier ones).
func CheckOrder(t *testing.T, msgs []bus.Message, keys []string, n int) {
	t.Helper()
	checkOrder(t, msgs, keys, n)
}

// PublishAll publishes seq 0..n-1 of every key, one Publish call per seq.
func PublishAll(t *testing.T, b bus.Bus, topic string, keys []string, n int) {
	t.Helper()
	publishAll(t, b, topic, keys, n)
}

// WaitFor polls cond until it holds, failing the test after Timeout.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, cond)
}

// UniqueTopic returns a topic name no other test uses.
func UniqueTopic(t *testing.T) string { return uniqueTopic(t) }

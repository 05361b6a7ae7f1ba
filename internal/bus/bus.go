// Package bus is the message bus between logic and job. The in-process
// implementation is the one-process default; Kafka serves the distributed
// mode. Messages are keyed: messages with the same key are delivered to one
// consumer of a group, in publish order.
package bus

import "context"

// Topics.
const (
	// TopicPush carries pushmsg.Msg values (push API, room and user pushes).
	TopicPush = "goim-push"
	// TopicMsg carries validated chat messages from logic to the job
	// persisters in the distributed mode, keyed by conversation id so that
	// one consumer owns a conversation at a time.
	TopicMsg = "goim-msg"
)

// Message is one bus message.
type Message struct {
	Topic string
	Key   string
	Value []byte
}

// Handler processes a batch of messages of one partition (all in publish
// order). The bus considers the batch done (commits it) only when the handler
// returns nil; on error it redelivers.
type Handler func(ctx context.Context, msgs []Message) error

// Bus publishes and consumes keyed messages.
type Bus interface {
	// Publish durably hands msgs to the bus; when it returns nil the bus
	// owns them (the caller must not modify their Values afterwards). It
	// may block for backpressure; it returns an error wrapping ctx's error
	// when ctx ends first or is already done.
	Publish(ctx context.Context, msgs ...Message) error
	// Subscribe starts consuming topic as consumer group in the background
	// and returns once the consumers run; they call h until ctx ends or the
	// bus closes. Each group receives every message (at least once; handlers
	// must be idempotent).
	Subscribe(ctx context.Context, topic, group string, h Handler) error
	// Close stops consumers and releases resources.
	Close() error
}

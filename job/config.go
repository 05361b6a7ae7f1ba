package job

import (
	"errors"
	"fmt"
	"time"
)

// Config configures the job stage. Zero values take the default documented
// on each field.
type Config struct {
	// Group is the bus consumer group. Every job process of a deployment
	// uses the same group so that each push is handled once. Default
	// "goim-job".
	Group string `yaml:"group"`
	// FlushInterval is the minimum time between two flushes of one room:
	// a message for a room that was flushed less than FlushInterval ago
	// waits for the rest of the interval and leaves merged with the other
	// messages that arrived meanwhile. It is thus also the most a room
	// message waits for merging. A room idle for an interval flushes its
	// next message at once. Default 20ms (at most 50 batches per second per
	// room and comet).
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxBatchBytes caps the encoded size of one room batch (the Op 9 body):
	// a batch that reaches it is flushed at once, without waiting for the
	// interval, and the next message starts a new batch. A single packet
	// larger than it travels alone. Default 32 KiB.
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// MaxBatchMsgs caps the number of packets in one room batch, like
	// MaxBatchBytes. Default 256.
	MaxBatchMsgs int `yaml:"max_batch_msgs"`
	// PushTimeout bounds one keys batch (one PushKeysBatch call) or unpaced
	// broadcast to one comet, and one room flush (the RoomServers lookup
	// plus the pushes of its batches to every comet, which run
	// concurrently). A paced broadcast
	// (speed > 0) takes conns/speed seconds and is not bounded by it, only
	// by the job's lifetime. Default 5s.
	PushTimeout time.Duration `yaml:"push_timeout"`
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		Group:         "goim-job",
		FlushInterval: 20 * time.Millisecond,
		MaxBatchBytes: 32 << 10,
		MaxBatchMsgs:  256,
		PushTimeout:   5 * time.Second,
	}
}

// withDefaults fills zero fields and validates the rest.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Group == "" {
		c.Group = d.Group
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = d.MaxBatchBytes
	}
	if c.MaxBatchMsgs == 0 {
		c.MaxBatchMsgs = d.MaxBatchMsgs
	}
	if c.PushTimeout == 0 {
		c.PushTimeout = d.PushTimeout
	}
	var errs []error
	if c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("flush_interval %v is negative", c.FlushInterval))
	}
	if c.MaxBatchBytes < 0 {
		errs = append(errs, fmt.Errorf("max_batch_bytes %d is negative", c.MaxBatchBytes))
	}
	if c.MaxBatchMsgs < 0 {
		errs = append(errs, fmt.Errorf("max_batch_msgs %d is negative", c.MaxBatchMsgs))
	}
	if c.PushTimeout < 0 {
		errs = append(errs, fmt.Errorf("push_timeout %v is negative", c.PushTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("job: config: %w", err)
	}
	return c, nil
}

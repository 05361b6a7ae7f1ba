package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("bus: closed")

// ErrGroupActive is returned by (*Memory).Subscribe when the group already
// consumes the topic: the memory bus runs one consumer per group and topic.
var ErrGroupActive = errors.New("bus: consumer group already subscribed")

var (
	memPublished = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_bus_memory_published_total",
		Help: "Messages published on the in-process bus.",
	}, []string{"topic"})
	memRedeliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_bus_memory_redeliveries_total",
		Help: "Batches redelivered after a handler error.",
	}, []string{"topic", "group"})
	memRetentionDrops = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_bus_memory_retention_drops_total",
		Help: "Messages dropped because a topic partition was full while no group consumed it.",
	}, []string{"topic"})
	memPublishWaits = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_bus_memory_publish_waits_total",
		Help: "Publish calls that waited for room in a full partition (backpressure).",
	}, []string{"topic"})
)

// MemoryConfig configures the in-process bus. Zero values take the default
// documented on each field.
type MemoryConfig struct {
	// Partitions is the number of partitions of every topic; a message goes
	// to the partition of its key's hash (FNV-1a), or round robin for an
	// empty key. Default 8.
	Partitions int `yaml:"partitions"`
	// MaxBatch is the most messages handed to one handler call. Default 256.
	MaxBatch int `yaml:"max_batch"`
	// QueueSize bounds the retained messages of one topic partition. When a
	// partition is full, Publish waits (respecting its ctx) for the slowest
	// group to commit; when no group consumes the topic, the oldest message
	// is dropped instead (retention) and counted in
	// goim_bus_memory_retention_drops_total. Default 4096.
	QueueSize int `yaml:"queue_size"`
	// RetryBackoff is the wait before redelivering a batch whose handler
	// failed; it doubles on each consecutive failure up to MaxRetryBackoff.
	// Default 50ms.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// MaxRetryBackoff caps RetryBackoff. Default 2s.
	MaxRetryBackoff time.Duration `yaml:"max_retry_backoff"`
}

// DefaultMemoryConfig returns the default configuration.
func DefaultMemoryConfig() MemoryConfig {
	return MemoryConfig{
		Partitions:      8,
		MaxBatch:        256,
		QueueSize:       4096,
		RetryBackoff:    50 * time.Millisecond,
		MaxRetryBackoff: 2 * time.Second,
	}
}

func (c MemoryConfig) withDefaults() MemoryConfig {
	d := DefaultMemoryConfig()
	if c.Partitions <= 0 {
		c.Partitions = d.Partitions
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = d.MaxBatch
	}
	if c.QueueSize <= 0 {
		c.QueueSize = d.QueueSize
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = d.RetryBackoff
	}
	if c.MaxRetryBackoff < c.RetryBackoff {
		c.MaxRetryBackoff = max(d.MaxRetryBackoff, c.RetryBackoff)
	}
	return c
}

// Memory is the in-process bus of the one-process server. It behaves like a
// small Kafka: every topic is split into partitions by key hash, each
// partition keeps a bounded log shared by all consumer groups, and each
// group has its own position (offset) in every partition. Per partition and
// group one goroutine hands batches of up to MaxBatch messages, in publish
// order, to the handler and commits them only when it returns nil; on error
// the same batch is redelivered after a backoff (at least once).
//
// Retention: messages published before a group subscribes are kept (up to
// QueueSize per partition) and a new group starts from the oldest retained
// message, like Kafka's auto.offset.reset=earliest. A group's position lives
// only while it is subscribed: when its Subscribe ctx ends the group is
// forgotten and stops holding messages back.
//
// Ownership: Publish does not copy Message.Value; the caller must not modify
// it afterwards, and handlers (of every group) share it read-only.
type Memory struct {
	cfg  MemoryConfig
	done chan struct{} // closed by Close
	wg   sync.WaitGroup
	rr   atomic.Uint64 // round robin for empty keys

	mu     sync.Mutex
	closed bool
	topics map[string]*memTopic
	subs   map[*memGroup]context.CancelFunc
}

var _ Bus = (*Memory)(nil)

type memTopic struct {
	name      string
	parts     []*memPartition
	groups    map[string]*memGroup // guarded by Memory.mu
	published prometheus.Counter
	drops     prometheus.Counter
	waits     prometheus.Counter
}

type memGroup struct {
	name    string
	running int // consumer goroutines still running; guarded by Memory.mu
}

type memPartition struct {
	mu      sync.Mutex
	log     []Message // retained messages; log[0] has offset base
	base    int64
	cursors map[*memGroup]*memCursor
	spaceCh chan struct{} // closed and replaced when the log is trimmed
	waiting int           // publishers waiting on spaceCh
}

// memCursor is a group's position in a partition.
type memCursor struct {
	next int64         // next offset to deliver
	wake chan struct{} // capacity 1: signalled when messages are appended
}

// NewMemory returns an in-process bus.
func NewMemory(cfg MemoryConfig) *Memory {
	return &Memory{
		cfg:    cfg.withDefaults(),
		done:   make(chan struct{}),
		topics: make(map[string]*memTopic),
		subs:   make(map[*memGroup]context.CancelFunc),
	}
}

// topic returns the named topic, creating it. It fails after Close.
func (m *Memory) topic(name string) (*memTopic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	t := m.topics[name]
	if t == nil {
		t = &memTopic{
			name:      name,
			parts:     make([]*memPartition, m.cfg.Partitions),
			groups:    make(map[string]*memGroup),
			published: memPublished.WithLabelValues(name),
			drops:     memRetentionDrops.WithLabelValues(name),
			waits:     memPublishWaits.WithLabelValues(name),
		}
		for i := range t.parts {
			t.parts[i] = &memPartition{
				cursors: make(map[*memGroup]*memCursor),
				spaceCh: make(chan struct{}),
			}
		}
		m.topics[name] = t
	}
	return t, nil
}

func (m *Memory) partition(t *memTopic, key string) *memPartition {
	n := uint64(len(t.parts))
	if key == "" {
		return t.parts[m.rr.Add(1)%n]
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return t.parts[uint64(h.Sum32())%n]
}

// Publish appends msgs to their topics' partitions, in order. It waits while
// a partition is full and a group consumes it, and returns ctx's error if ctx
// ends first (messages before the failing one are published). It fails with
// ErrClosed after Close.
func (m *Memory) Publish(ctx context.Context, msgs ...Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bus: publish: %w", err)
	}
	var t *memTopic
	for i := range msgs {
		msg := &msgs[i]
		if msg.Topic == "" {
			return errors.New("bus: publish: empty topic")
		}
		if t == nil || t.name != msg.Topic {
			var err error
			if t, err = m.topic(msg.Topic); err != nil {
				return err
			}
		}
		if err := m.append(ctx, t, m.partition(t, msg.Key), *msg); err != nil {
			return err
		}
		t.published.Inc()
	}
	return nil
}

func (m *Memory) append(ctx context.Context, t *memTopic, p *memPartition, msg Message) error {
	waited := false
	for {
		p.mu.Lock()
		if len(p.log) >= m.cfg.QueueSize {
			if len(p.cursors) > 0 {
				ch := p.spaceCh
				p.waiting++
				p.mu.Unlock()
				if !waited {
					waited = true
					t.waits.Inc()
				}
				var err error
				select {
				case <-ch:
				case <-ctx.Done():
					err = fmt.Errorf("bus: publish: %w", ctx.Err())
				case <-m.done:
					err = ErrClosed
				}
				p.mu.Lock()
				p.waiting--
				p.mu.Unlock()
				if err != nil {
					return err
				}
				continue
			}
			// Nobody consumes this topic: retention drops the oldest.
			p.log[0] = Message{}
			p.log = p.log[1:]
			p.base++
			t.drops.Inc()
		}
		select {
		case <-m.done:
			p.mu.Unlock()
			return ErrClosed
		default:
		}
		p.log = append(p.log, msg)
		for _, c := range p.cursors {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		p.mu.Unlock()
		return nil
	}
}

// Subscribe starts one consumer goroutine per partition of topic for group.
// They stop when ctx ends or the bus closes; the ctx passed to h is then
// cancelled. A group may have only one active subscription per topic
// (ErrGroupActive).
func (m *Memory) Subscribe(ctx context.Context, topic, group string, h Handler) error {
	if topic == "" || group == "" {
		return errors.New("bus: subscribe: empty topic or group")
	}
	if h == nil {
		return errors.New("bus: subscribe: nil handler")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bus: subscribe: %w", err)
	}
	t, err := m.topic(topic)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := t.groups[group]; ok {
		return fmt.Errorf("%w: topic %q group %q", ErrGroupActive, topic, group)
	}
	g := &memGroup{name: group, running: len(t.parts)}
	t.groups[group] = g
	subCtx, cancel := context.WithCancel(ctx)
	m.subs[g] = cancel
	redeliveries := memRedeliveries.WithLabelValues(topic, group)
	for _, p := range t.parts {
		p.mu.Lock()
		p.cursors[g] = &memCursor{next: p.base, wake: make(chan struct{}, 1)} // earliest retained
		p.mu.Unlock()
	}
	for _, p := range t.parts {
		m.wg.Add(1)
		go m.consume(subCtx, t, p, g, h, redeliveries)
	}
	return nil
}

func (m *Memory) consume(ctx context.Context, t *memTopic, p *memPartition, g *memGroup, h Handler, redeliveries prometheus.Counter) {
	defer m.wg.Done()
	defer m.leave(t, p, g)
	p.mu.Lock()
	c := p.cursors[g] // set by Subscribe before this goroutine starts
	p.mu.Unlock()
	for {
		p.mu.Lock()
		cur := c.next
		end := p.base + int64(len(p.log))
		if cur >= end {
			p.mu.Unlock()
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		n := min(int(end-cur), m.cfg.MaxBatch)
		off := int(cur - p.base)
		batch := make([]Message, n)
		copy(batch, p.log[off:off+n])
		p.mu.Unlock()

		backoff := m.cfg.RetryBackoff
		for {
			if ctx.Err() != nil {
				return
			}
			if err := h(ctx, batch); err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			redeliveries.Inc()
			tm := time.NewTimer(backoff)
			select {
			case <-tm.C:
			case <-ctx.Done():
				tm.Stop()
				return
			}
			backoff = min(2*backoff, m.cfg.MaxRetryBackoff)
		}

		p.mu.Lock()
		c.next = cur + int64(n)
		p.trim()
		p.mu.Unlock()
	}
}

// trim drops the messages every group has committed. p.mu must be held.
func (p *memPartition) trim() {
	if len(p.cursors) == 0 {
		return
	}
	low := p.base + int64(len(p.log))
	for _, c := range p.cursors {
		low = min(low, c.next)
	}
	n := int(low - p.base)
	if n <= 0 {
		return
	}
	clear(p.log[:n])
	p.log = p.log[n:]
	if len(p.log) == 0 {
		p.log = p.log[:0:0] // release the backing array
	}
	p.base = low
	p.wakePublishers()
}

// wakePublishers wakes the publishers waiting for room. p.mu must be held.
func (p *memPartition) wakePublishers() {
	if p.waiting > 0 {
		close(p.spaceCh)
		p.spaceCh = make(chan struct{})
	}
}

// leave removes g from p and, for the group's last consumer, from the topic.
func (m *Memory) leave(t *memTopic, p *memPartition, g *memGroup) {
	p.mu.Lock()
	delete(p.cursors, g)
	// Without this group the partition may be trimmable or, with no group
	// left, open to retention: wake waiting publishers either way.
	p.trim()
	p.wakePublishers()
	p.mu.Unlock()

	m.mu.Lock()
	g.running--
	if g.running == 0 {
		if t.groups[g.name] == g {
			delete(t.groups, g.name)
		}
		if cancel := m.subs[g]; cancel != nil {
			cancel()
			delete(m.subs, g)
		}
	}
	m.mu.Unlock()
}

// Close stops every consumer (cancelling the ctx of running handlers), waits
// for them to return, and makes Publish and Subscribe fail with ErrClosed.
// Messages not yet consumed are lost. Close is idempotent.
func (m *Memory) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.wg.Wait()
		return nil
	}
	m.closed = true
	close(m.done)
	for _, cancel := range m.subs {
		cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

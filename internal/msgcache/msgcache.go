package msgcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goimdev/goim/internal/cacheguard"
	"github.com/goimdev/goim/internal/store"
)

// Run is a run of consecutive messages of one conversation, ascending by
// seq (Msgs[i].Seq == Msgs[0].Seq+i), to append to its window.
type Run struct {
	ConvID string
	Msgs   []store.Message
}

// Window is what a backend holds of a conversation: the bounds of its
// window (Lo == Hi == 0: no window) and the messages asked for.
type Window struct {
	Lo, Hi int64
	// Msgs are the window's messages with from <= seq <= to, ascending.
	Msgs []store.Message
}

// Backend stores the windows. Implementations are safe for concurrent use;
// each method is one round trip to a remote backend.
type Backend interface {
	// Name is the backend's metric label: "memory", "redis".
	Name() string
	// Append appends each run to its conversation's window. A run whose
	// first seq is not the window's Hi+1 replaces the window (a gap: the
	// window is dropped, never kept with a hole). A fenced conversation
	// (Drop with a fence) ignores the run. The window keeps its last K
	// messages. gaps counts the windows replaced.
	Append(ctx context.Context, runs ...Run) (gaps int, err error)
	// Window returns convID's window bounds and its messages with
	// from <= seq <= to (to-from < store.MaxPageLimit).
	Window(ctx context.Context, convID string, from, to int64) (Window, error)
	// Drop deletes the windows of convIDs; with fence > 0 their appends are
	// also ignored for that long.
	Drop(ctx context.Context, fence time.Duration, convIDs ...string) error
}

// Config configures a Cache. Zero values take the default documented on
// each field.
type Config struct {
	// VerifyTail confirms, with one store.Messages.Conversation read, that a
	// page served up to the window's newest message ends at the
	// conversation's max_seq. Needed when a writer may die between its
	// commit and its cache write (several logic processes on Redis); the
	// one-process server writes the window before acknowledging and leaves
	// it off. Default false.
	VerifyTail bool `yaml:"verify_tail"`
	// RecallFence is how long a recalled message's conversation ignores
	// appends after its window is dropped, so that a commit racing with the
	// recall cannot put the recalled content back. Default 2s.
	RecallFence time.Duration `yaml:"recall_fence"`
	// RetryAfter is how long the cache bypasses a failing backend. Default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// WriteTimeout bounds one append or drop call to the backend (it runs
	// after a commit, detached from any request). Default 500ms.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxPending is the most conversations whose windows are remembered for
	// deletion while the backend is failing; beyond it invalidations are
	// lost (counted). Default 100000.
	MaxPending int `yaml:"max_pending"`
	// Logger receives backend failures and recoveries. Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// Now is the clock of the failure bypass (tests). Default time.Now.
	Now func() time.Time `yaml:"-"`
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		RecallFence:  2 * time.Second,
		RetryAfter:   time.Second,
		WriteTimeout: 500 * time.Millisecond,
		MaxPending:   100_000,
		Logger:       slog.Default(),
		Now:          time.Now,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.RecallFence <= 0 {
		c.RecallFence = d.RecallFence
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = d.RetryAfter
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.MaxPending <= 0 {
		c.MaxPending = d.MaxPending
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Stats are the counters of one Cache since New.
type Stats struct {
	Hits, Misses uint64
	// BackendErrors counts failed backend calls.
	BackendErrors uint64
	// Drops counts windows dropped (gaps, recalls, errors).
	Drops uint64
	// LostInvalidations counts invalidations dropped with a full queue.
	LostInvalidations uint64
}

// HitRatio is Hits / (Hits + Misses), 0 without lookups.
func (s Stats) HitRatio() float64 {
	if n := s.Hits + s.Misses; n > 0 {
		return float64(s.Hits) / float64(n)
	}
	return 0
}

// Cache serves message pages from a Backend when it holds them, else from
// the store. It is safe for concurrent use and owns no goroutine.
type Cache struct {
	b    Backend
	src  store.Messages
	cfg  Config
	log  *slog.Logger
	errC prometheus.Counter

	// guard bypasses a failing backend and keeps the windows to delete
	// before it is used again.
	guard *cacheguard.Guard[string]

	hits, misses, errs, drops, lost atomic.Uint64
}

// New returns a Cache of b in front of src. Both must be non-nil.
func New(b Backend, src store.Messages, cfg Config) *Cache {
	if b == nil || src == nil {
		panic("msgcache: New with a nil backend or store")
	}
	cfg = cfg.withDefaults()
	c := &Cache{
		b:    b,
		src:  src,
		cfg:  cfg,
		log:  cfg.Logger.With("component", "msgcache", "backend", b.Name()),
		errC: metricErrors.WithLabelValues(b.Name()),
	}
	c.guard = cacheguard.New(cacheguard.Config[string]{
		Name:       "msgcache",
		RetryAfter: cfg.RetryAfter,
		MaxPending: cfg.MaxPending,
		Timeout:    cfg.WriteTimeout,
		Flush: func(ctx context.Context, ids []string) error {
			for len(ids) > 0 {
				n := min(len(ids), 512)
				if err := b.Drop(ctx, 0, ids[:n]...); err != nil {
					return err
				}
				ids = ids[n:]
			}
			return nil
		},
		OnError: func() { c.errs.Add(1); c.errC.Inc() },
		OnLost:  func(n int) { c.lost.Add(uint64(n)); metricLost.Add(float64(n)) },
		Log:     c.log,
		Now:     cfg.Now,
	})
	return c
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), BackendErrors: c.errs.Load(),
		Drops: c.drops.Load(), LostInvalidations: c.lost.Load(),
	}
}

// Messages answers a page exactly as store.Messages.Messages does: from
// the conversation's window when it holds every seq of the page, else
// from the store. A backend failure is not an error: the store answers.
func (c *Cache) Messages(ctx context.Context, convID string, afterSeq, beforeSeq int64, limit int) ([]store.Message, bool, error) {
	if msgs, more, ok := c.lookup(ctx, convID, afterSeq, beforeSeq, limit); ok {
		c.hits.Add(1)
		lookupHit.Inc()
		return msgs, more, nil
	}
	c.misses.Add(1)
	lookupMiss.Inc()
	return c.src.Messages(ctx, convID, afterSeq, beforeSeq, limit)
}

// lookup answers from the window, ok false when it cannot.
func (c *Cache) lookup(ctx context.Context, convID string, after, before int64, limit int) ([]store.Message, bool, bool) {
	if limit <= 0 || limit > store.MaxPageLimit || after < 0 || before < 0 ||
		(before > 0 && before <= after+1) || len(convID) > store.MaxConversationIDLen || !c.usable() {
		return nil, false, false
	}
	var from, to int64
	if before > 0 {
		to = before - 1
		from = max(after+1, before-int64(limit))
	} else {
		from = after + 1
		to = after + int64(limit)
	}
	w, err := c.b.Window(ctx, convID, from, to)
	if err != nil {
		c.backendError(ctx, "window", err)
		return nil, false, false
	}
	if w.Hi == 0 || from < w.Lo {
		return nil, false, false
	}
	end := min(to, w.Hi)
	if before > 0 && to > w.Hi {
		return nil, false, false
	}
	if from > w.Hi+1 { // beyond the window: the cache may be behind
		return nil, false, false
	}
	if !contiguous(w.Msgs, from, end) {
		// A backend bug or a corrupted window: never serve a hole.
		c.drop(ctx, dropError, 0, convID)
		return nil, false, false
	}
	msgs := w.Msgs
	if len(msgs) == 0 {
		msgs = nil
	}
	for i := range msgs {
		msgs[i].ConversationID = convID
	}
	if before > 0 {
		// Every seq 1..max_seq exists: there is more below iff from-1 is
		// still above afterSeq.
		return msgs, from > after+1, true
	}
	if to < w.Hi {
		return msgs, true, true
	}
	// The page reaches the window's top: it is complete iff Hi is max_seq.
	if c.cfg.VerifyTail {
		conv, err := c.src.Conversation(ctx, convID)
		if err != nil || conv.MaxSeq != w.Hi {
			return nil, false, false
		}
	}
	return msgs, false, true
}

// contiguous reports whether msgs hold exactly the seqs from..to.
func contiguous(msgs []store.Message, from, to int64) bool {
	if int64(len(msgs)) != max(to-from+1, 0) {
		return false
	}
	for i := range msgs {
		if msgs[i].Seq != from+int64(i) {
			return false
		}
	}
	return true
}

// Committed tells the cache about messages just stored by one commit (in
// commit order; duplicates and refused messages left out): they are
// appended to their conversations' windows. Call it before the commit is
// acknowledged, so that a page read after the ack sees the message. It
// never fails: a backend failure queues the conversations' windows for
// deletion.
func (c *Cache) Committed(ctx context.Context, msgs []*store.Message) {
	if len(msgs) == 0 {
		return
	}
	runs := toRuns(msgs)
	if !c.usable() {
		c.queue(convIDs(runs)...)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.WriteTimeout)
	defer cancel()
	gaps, err := c.b.Append(ctx, runs...)
	if gaps > 0 {
		c.drops.Add(uint64(gaps))
		dropGap.Add(float64(gaps))
	}
	if err != nil {
		c.backendError(ctx, "append", err)
		c.queue(convIDs(runs)...)
	}
}

// Recalled tells the cache that a message of convID was recalled (and a
// notice appended): the window is dropped and fenced for RecallFence.
func (c *Cache) Recalled(ctx context.Context, convID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.WriteTimeout)
	defer cancel()
	c.drop(ctx, dropRecall, c.cfg.RecallFence, convID)
}

// drop deletes a window, queueing it when the backend fails.
func (c *Cache) drop(ctx context.Context, reason prometheus.Counter, fence time.Duration, convID string) {
	c.drops.Add(1)
	reason.Inc()
	if !c.usable() {
		c.queue(convID)
		return
	}
	if err := c.b.Drop(ctx, fence, convID); err != nil {
		c.backendError(ctx, "drop", err)
		c.queue(convID)
	}
}

// toRuns copies msgs into runs of consecutive seqs per conversation,
// normalized as the store reads them back (millisecond times, nil empty
// lists, no IndexUsers).
func toRuns(msgs []*store.Message) []Run {
	var runs []Run
	last := make(map[string]int, 4) // conversation -> index of its last run
	for _, m := range msgs {
		if m == nil || m.Seq <= 0 {
			continue
		}
		cp := *m
		cp.IndexUsers = nil
		cp.CreatedAt = time.UnixMilli(m.CreatedAt.UnixMilli())
		if len(m.Mentions) == 0 {
			cp.Mentions = nil
		} else {
			cp.Mentions = append([]int64(nil), m.Mentions...)
		}
		cp.Content = append([]byte(nil), m.Content...)
		if i, ok := last[m.ConversationID]; ok {
			r := &runs[i]
			if r.Msgs[len(r.Msgs)-1].Seq+1 == cp.Seq {
				r.Msgs = append(r.Msgs, cp)
				continue
			}
		}
		last[m.ConversationID] = len(runs)
		runs = append(runs, Run{ConvID: m.ConversationID, Msgs: []store.Message{cp}})
	}
	return runs
}

func convIDs(runs []Run) []string {
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ConvID
	}
	return ids
}

// usable reports whether the backend may be used now.
func (c *Cache) usable() bool { return c.guard.Usable() }

// queue remembers windows to delete before the backend is used again.
func (c *Cache) queue(ids ...string) { c.guard.Queue(ids...) }

// backendError counts a failed backend call and bypasses the backend for
// RetryAfter. A call that failed because the caller's context ended says
// nothing about the backend and is ignored.
func (c *Cache) backendError(ctx context.Context, op string, err error) {
	if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		return
	}
	c.guard.Failed(op, fmt.Errorf("msgcache: %w", err))
}

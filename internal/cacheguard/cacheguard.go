// Package cacheguard is the failure bypass shared by GoIM's caches
// (internal/relcache, internal/msgcache): when the cache backend (Redis)
// fails, the cache is bypassed for a while and answers come from the store;
// the invalidations that could not reach the backend meanwhile are kept, up
// to a bound, and flushed before the backend is used again, so that a
// backend that comes back never serves an entry invalidated while it was
// away.
package cacheguard

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Guard. Every field is required except Now.
type Config[K comparable] struct {
	Name       string        // for logs, e.g. "relcache"
	RetryAfter time.Duration // bypass after a failure
	MaxPending int           // invalidations kept while bypassing; more are lost
	Timeout    time.Duration // bounds one Flush call
	// Flush deletes keys from the backend (in one call or in chunks).
	Flush func(ctx context.Context, keys []K) error
	// OnError is called for every failed backend call (metrics); OnLost
	// with the number of invalidations dropped because the queue was full.
	OnError func()
	OnLost  func(n int)
	Log     *slog.Logger
	Now     func() time.Time // default time.Now
}

// Guard decides whether a cache may use its backend. It is safe for
// concurrent use.
type Guard[K comparable] struct {
	cfg Config[K]
	// down is 0 while the backend is in use, else the unix-nano time until
	// which it is bypassed. Invariant (kept under mu): pending is non-empty
	// only while down is set.
	down      atomic.Int64
	recoverMu sync.Mutex // one caller at a time flushes
	mu        sync.Mutex
	pending   map[K]struct{}
}

// New returns a Guard with the backend in use.
func New[K comparable](cfg Config[K]) *Guard[K] {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Guard[K]{cfg: cfg, pending: make(map[K]struct{})}
}

// Usable reports whether the backend may be used now, after flushing the
// pending invalidations when the bypass interval is over.
func (g *Guard[K]) Usable() bool {
	d := g.down.Load()
	if d == 0 {
		return true
	}
	if g.cfg.Now().UnixNano() < d {
		return false
	}
	return g.recover()
}

// Failed records a failed backend call: the backend is bypassed for
// RetryAfter. Callers skip it for failures caused by their own context.
func (g *Guard[K]) Failed(op string, err error) {
	g.cfg.OnError()
	until := g.cfg.Now().Add(g.cfg.RetryAfter).UnixNano()
	if g.down.Swap(until) == 0 {
		g.cfg.Log.Warn(g.cfg.Name+": backend failing, reading the store directly",
			"op", op, "err", err, "retry_after", g.cfg.RetryAfter)
	}
}

// QueueIfDown queues keys when the backend is bypassed and reports whether
// it did (then the caller must not call the backend) and how many keys were
// lost to the bound.
func (g *Guard[K]) QueueIfDown(keys ...K) (queued bool, lost int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down.Load() == 0 {
		return false, 0
	}
	return true, g.queueLocked(keys)
}

// Queue keeps keys for deletion before the backend is used again (the
// backend is bypassed until then) and returns how many were lost.
func (g *Guard[K]) Queue(keys ...K) (lost int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.queueLocked(keys)
}

func (g *Guard[K]) queueLocked(keys []K) (lost int) {
	for _, k := range keys {
		if _, ok := g.pending[k]; ok {
			continue
		}
		if len(g.pending) >= g.cfg.MaxPending {
			lost++
			continue
		}
		g.pending[k] = struct{}{}
	}
	if len(g.pending) > 0 && g.down.Load() == 0 {
		// Keep the invariant; a zero wait lets the next use flush at once.
		g.down.Store(g.cfg.Now().UnixNano())
	}
	if lost > 0 {
		g.cfg.OnLost(lost)
		g.cfg.Log.Error(g.cfg.Name+": invalidations lost, entries may be stale until their TTL",
			"keys", lost, "max_pending", g.cfg.MaxPending)
	}
	return lost
}

// recover flushes the pending invalidations and puts the backend back in
// use. Only one caller flushes; the others keep bypassing meanwhile.
func (g *Guard[K]) recover() bool {
	if !g.recoverMu.TryLock() {
		return false
	}
	defer g.recoverMu.Unlock()
	for {
		d := g.down.Load()
		if d == 0 {
			return true
		}
		if g.cfg.Now().UnixNano() < d {
			return false // tripped again meanwhile
		}
		g.mu.Lock()
		if len(g.pending) == 0 {
			g.down.Store(0)
			g.mu.Unlock()
			g.cfg.Log.Info(g.cfg.Name + ": backend back in use")
			return true
		}
		keys := make([]K, 0, len(g.pending))
		for k := range g.pending {
			keys = append(keys, k)
		}
		clear(g.pending)
		g.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Timeout)
		err := g.cfg.Flush(ctx, keys)
		cancel()
		if err != nil {
			g.cfg.OnError()
			g.mu.Lock()
			for _, k := range keys {
				g.pending[k] = struct{}{} // queued already: no bound check
			}
			g.down.Store(g.cfg.Now().Add(g.cfg.RetryAfter).UnixNano())
			g.mu.Unlock()
			return false
		}
	}
}

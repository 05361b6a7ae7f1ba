package logic

import (
	"sync"
	"time"
)

// limiterShards spreads the per-user limiters over several locks: the send
// path of every connection goes through them.
const limiterShards = 64

// tokenLimiter is a token bucket per user: rate tokens per second, at most
// burst saved. It is per process and starts no goroutine: each shard
// sweeps its full buckets when it has grown past its sweep mark.
type tokenLimiter struct {
	rate   float64
	burst  float64
	shards [limiterShards]tokenShard
}

type tokenShard struct {
	mu      sync.Mutex
	buckets map[int64]*bucket
	sweepAt int
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newTokenLimiter(rate float64, burst int) *tokenLimiter {
	l := &tokenLimiter{rate: rate, burst: float64(max(burst, 1))}
	for i := range l.shards {
		l.shards[i].buckets = make(map[int64]*bucket)
		l.shards[i].sweepAt = minSweep
	}
	return l
}

// allow takes one token of user at now, reporting false (and taking
// nothing) when the bucket is empty.
func (l *tokenLimiter) allow(user int64, now time.Time) bool {
	sh := &l.shards[uint64(user)%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.buckets[user]
	if !ok {
		if len(sh.buckets) >= sh.sweepAt {
			sh.sweep(l, now)
		}
		b = &bucket{tokens: l.burst, last: now}
		sh.buckets[user] = b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops the buckets that are full again (a new bucket starts full).
func (sh *tokenShard) sweep(l *tokenLimiter, now time.Time) {
	for u, b := range sh.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(sh.buckets, u)
		}
	}
	sh.sweepAt = max(2*len(sh.buckets), minSweep)
}

// intervalLimiter allows one event per key per interval; it is what limits
// typing events (per user and conversation).
type intervalLimiter struct {
	interval time.Duration
	shards   [limiterShards]intervalShard
}

type intervalKey struct {
	user int64
	conv string
}

type intervalShard struct {
	mu      sync.Mutex
	last    map[intervalKey]time.Time
	sweepAt int
}

func newIntervalLimiter(interval time.Duration) *intervalLimiter {
	l := &intervalLimiter{interval: interval}
	for i := range l.shards {
		l.shards[i].last = make(map[intervalKey]time.Time)
		l.shards[i].sweepAt = minSweep
	}
	return l
}

// allow reports whether the key's last allowed event is at least interval
// before now, and if so records now.
func (l *intervalLimiter) allow(user int64, conv string, now time.Time) bool {
	sh := &l.shards[uint64(user)%limiterShards]
	k := intervalKey{user, conv}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if t, ok := sh.last[k]; ok && now.Sub(t) < l.interval && !now.Before(t) {
		return false
	}
	if len(sh.last) >= sh.sweepAt {
		for kk, t := range sh.last {
			if now.Sub(t) >= l.interval {
				delete(sh.last, kk)
			}
		}
		sh.sweepAt = max(2*len(sh.last), minSweep)
	}
	sh.last[k] = now
	return true
}

// knownUsers remembers user ids seen to exist (accounts are never
// deleted, so an entry never goes stale); it saves the recipient lookup
// of one-to-one sends. Bounded: it is emptied when full.
type knownUsers struct {
	mu  sync.RWMutex
	ids map[int64]struct{}
}

const maxKnownUsers = 1 << 20

func (k *knownUsers) has(id int64) bool {
	k.mu.RLock()
	_, ok := k.ids[id]
	k.mu.RUnlock()
	return ok
}

func (k *knownUsers) add(id int64) {
	k.mu.Lock()
	if k.ids == nil || len(k.ids) >= maxKnownUsers {
		k.ids = make(map[int64]struct{})
	}
	k.ids[id] = struct{}{}
	k.mu.Unlock()
}

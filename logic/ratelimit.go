package logic

import (
	"sync"
	"time"
)

// windowLimiter allows each user at most limit events per fixed window. It
// is per process (a user spreading requests over several logic instances
// gets limit per instance) and starts no goroutine: expired entries are
// swept when the map grows past sweepAt.
type windowLimiter struct {
	limit  int
	window time.Duration

	mu      sync.Mutex
	users   map[int64]*windowCount
	sweepAt int
}

type windowCount struct {
	start time.Time
	n     int
}

const minSweep = 1024

func newWindowLimiter(limit int, window time.Duration) *windowLimiter {
	return &windowLimiter{limit: limit, window: window, users: make(map[int64]*windowCount), sweepAt: minSweep}
}

// allow counts one event of user at now and reports whether it is within
// the limit. A refused event is not counted.
func (l *windowLimiter) allow(user int64, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.users[user]
	if !ok || now.Sub(c.start) >= l.window || now.Before(c.start) {
		if !ok {
			if len(l.users) >= l.sweepAt {
				l.sweep(now)
			}
			c = &windowCount{}
			l.users[user] = c
		}
		c.start, c.n = now, 0
	}
	if c.n >= l.limit {
		return false
	}
	c.n++
	return true
}

// sweep drops expired windows; the next sweep happens when the map has
// doubled from what is left.
func (l *windowLimiter) sweep(now time.Time) {
	for u, c := range l.users {
		if now.Sub(c.start) >= l.window {
			delete(l.users, u)
		}
	}
	l.sweepAt = max(2*len(l.users), minSweep)
}

package comet

import (
	"sync"
	"time"
)

// wheel is a hashed timing wheel shared by all connections of a server: it
// drives handshake, idle and close timeouts without a timer per connection.
// A connection sits in at most one slot (intrusive list through
// conn.wprev/wnext). Deadlines are lazy: activity only stores a timestamp in
// the connection, and when a slot comes due the server recomputes each
// connection's real deadline and re-files the ones not yet due. Deadlines
// beyond the wheel's span are filed in the farthest slot and re-filed when
// they come round.
type wheel struct {
	mu    sync.Mutex
	tick  int64 // nanoseconds per slot
	slots []*conn
	cur   int   // slot of the current tick
	base  int64 // start of the current tick, unix nanoseconds
	n     int   // connections filed
}

const wheelSlots = 1024

func newWheel(tick time.Duration, now int64) *wheel {
	return &wheel{tick: int64(tick), slots: make([]*conn, wheelSlots), base: now}
}

// wheelTick picks a slot width: a sixteenth of the shortest timeout, kept
// within [10ms, 1s].
func wheelTick(timeouts ...time.Duration) time.Duration {
	m := time.Duration(0)
	for _, t := range timeouts {
		if t > 0 && (m == 0 || t < m) {
			m = t
		}
	}
	t := m / 16
	if t < 10*time.Millisecond {
		t = 10 * time.Millisecond
	}
	if t > time.Second {
		t = time.Second
	}
	return t
}

// add files c (moving it if it is filed already) to come due at deadline.
func (w *wheel) add(c *conn, deadline int64) {
	w.mu.Lock()
	w.unlink(c)
	w.link(c, deadline)
	w.mu.Unlock()
}

// remove takes c out of the wheel, if it is in.
func (w *wheel) remove(c *conn) {
	w.mu.Lock()
	w.unlink(c)
	w.mu.Unlock()
}

func (w *wheel) link(c *conn, deadline int64) {
	ticks := (deadline - w.base + w.tick - 1) / w.tick
	if ticks < 1 {
		ticks = 1
	}
	if ticks >= int64(len(w.slots)) {
		ticks = int64(len(w.slots)) - 1
	}
	slot := (w.cur + int(ticks)) % len(w.slots)
	c.wdeadline = deadline
	c.wslot = int32(slot)
	c.wprev = nil
	c.wnext = w.slots[slot]
	if c.wnext != nil {
		c.wnext.wprev = c
	}
	w.slots[slot] = c
	w.n++
}

func (w *wheel) unlink(c *conn) {
	if c.wslot < 0 {
		return
	}
	if c.wprev != nil {
		c.wprev.wnext = c.wnext
	} else {
		w.slots[c.wslot] = c.wnext
	}
	if c.wnext != nil {
		c.wnext.wprev = c.wprev
	}
	c.wprev, c.wnext, c.wslot = nil, nil, -1
	w.n--
}

// advance moves the wheel to now and appends to due every connection whose
// filed deadline has passed (they leave the wheel); connections of a
// passed slot whose deadline is still ahead are re-filed.
func (w *wheel) advance(now int64, due []*conn) []*conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now-w.base >= w.tick*int64(len(w.slots)) {
		// Behind by a whole turn (a stalled process): re-file everything
		// from now.
		var all *conn
		for i, head := range w.slots {
			for c := head; c != nil; {
				next := c.wnext
				c.wnext = all
				all = c
				c = next
			}
			w.slots[i] = nil
		}
		w.n, w.cur, w.base = 0, 0, now
		for c := all; c != nil; {
			next := c.wnext
			c.wprev, c.wnext, c.wslot = nil, nil, -1
			if c.wdeadline <= now {
				due = append(due, c)
			} else {
				w.link(c, c.wdeadline)
			}
			c = next
		}
		return due
	}
	for w.base+w.tick <= now {
		w.cur = (w.cur + 1) % len(w.slots)
		w.base += w.tick
		head := w.slots[w.cur]
		w.slots[w.cur] = nil
		for c := head; c != nil; {
			next := c.wnext
			c.wprev, c.wnext, c.wslot = nil, nil, -1
			w.n--
			if c.wdeadline <= now {
				due = append(due, c)
			} else {
				w.link(c, c.wdeadline)
			}
			c = next
		}
	}
	return due
}

// each appends every filed connection to dst.
func (w *wheel) each(dst []*conn) []*conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, head := range w.slots {
		for c := head; c != nil; c = c.wnext {
			dst = append(dst, c)
		}
	}
	return dst
}

// len returns the number of filed connections.
func (w *wheel) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

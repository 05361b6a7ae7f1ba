package comet

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/goimdev/goim/protocol"
)

// bucket is one shard of a server's connections (by routing key hash) and
// rooms (by room name hash).
type bucket struct {
	mu    sync.RWMutex
	chs   map[string]*conn
	rooms map[string]*room
}

func newBucket() *bucket {
	return &bucket{chs: make(map[string]*conn), rooms: make(map[string]*room)}
}

// room is a live room's local membership: an intrusive list through
// conn.rprev/rnext, guarded by the bucket lock of the room's name.
type room struct {
	id     string
	head   *conn
	online atomic.Int32 // written under the bucket lock, read without
	// announced: Logic.RoomJoined succeeded for this room since it last
	// had no member here. joining is non-nil while that call is in flight;
	// later joiners wait for it before their Op 13.
	announced bool
	joining   chan struct{}
}

func (r *room) add(c *conn) {
	c.rprev = nil
	c.rnext = r.head
	if r.head != nil {
		r.head.rprev = c
	}
	r.head = c
	c.room = r
	r.online.Add(1)
}

func (r *room) remove(c *conn) {
	if c.rprev != nil {
		c.rprev.rnext = c.rnext
	} else {
		r.head = c.rnext
	}
	if c.rnext != nil {
		c.rnext.rprev = c.rprev
	}
	c.rprev, c.rnext, c.room = nil, nil, nil
	r.online.Add(-1)
}

// hash is FNV-1a; it does not allocate.
func hash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func (s *Server) bucket(key string) *bucket {
	return s.buckets[hash(key)%uint32(len(s.buckets))]
}

// errKeyInUse refuses a connection whose key is held by another user.
var errKeyInUse = closeErr(protocol.CodeUnauthorized, "key in use")

// register puts an authenticated connection in its key's bucket. A
// connection of the same user with the same key is returned to be replaced;
// one of another user refuses c.
func (s *Server) register(c *conn) (old *conn, err error) {
	b := s.bucket(c.key)
	b.mu.Lock()
	defer b.mu.Unlock()
	if old = b.chs[c.key]; old != nil && old.userID != c.userID {
		return nil, errKeyInUse
	}
	b.chs[c.key] = c
	return old, nil
}

// unregister removes c from its bucket unless another connection took the
// key, and reports whether c still held it.
func (s *Server) unregister(c *conn) bool {
	b := s.bucket(c.key)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.chs[c.key] != c {
		return false
	}
	delete(b.chs, c.key)
	return true
}

// joinRoom moves c into room name ("" only leaves). When the room gets its
// first member on this comet, Logic.RoomJoined is called before joinRoom
// returns (and so before the caller acknowledges the join); a concurrent
// joiner of the same room waits for that call. Only the connection's reader
// calls it.
func (s *Server) joinRoom(ctx context.Context, c *conn, name string) {
	if c.room != nil {
		if c.room.id == name {
			return
		}
		s.leaveRoom(c)
	}
	if name == "" {
		return
	}
	b := s.bucket(name)
	b.mu.Lock()
	r := b.rooms[name]
	if r == nil {
		r = &room{id: name}
		b.rooms[name] = r
		s.nrooms.Add(1)
		metricRooms.Inc()
	}
	r.add(c)
	var call bool
	var wait chan struct{}
	if !r.announced {
		if r.joining == nil {
			r.joining = make(chan struct{})
			call = true
		}
		wait = r.joining
	}
	b.mu.Unlock()

	switch {
	case call:
		cctx, cancel := context.WithTimeout(ctx, s.cfg.LogicTimeout)
		err := s.logic.RoomJoined(cctx, s.cfg.Node, name)
		cancel()
		if err != nil {
			s.log.Warn("comet: RoomJoined failed; the room is reported by the next RenewOnline", "room", name, "err", err)
		}
		b.mu.Lock()
		r.announced = err == nil
		close(r.joining)
		r.joining = nil
		b.mu.Unlock()
	case wait != nil:
		select {
		case <-wait:
		case <-ctx.Done():
		}
	}
}

// leaveRoom takes c out of its room, dropping the room when it empties.
func (s *Server) leaveRoom(c *conn) {
	r := c.room
	if r == nil {
		return
	}
	b := s.bucket(r.id)
	b.mu.Lock()
	r.remove(c)
	if r.online.Load() == 0 && b.rooms[r.id] == r {
		delete(b.rooms, r.id)
		s.nrooms.Add(-1)
		metricRooms.Dec()
	}
	b.mu.Unlock()
}

// localOnline returns the number of local members of room name.
func (s *Server) localOnline(name string) int32 {
	b := s.bucket(name)
	b.mu.RLock()
	r := b.rooms[name]
	b.mu.RUnlock()
	if r == nil {
		return 0
	}
	return r.online.Load()
}

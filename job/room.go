package job

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/protocol"
)

// Room batching.
//
// Every room with pending or recently flushed messages has a roomState and
// one flusher goroutine. The flusher sends everything pending as soon as the
// previous flush is FlushInterval old (at once for the first message), or
// earlier when a batch is full, and lingers one interval after its last
// flush so that messages arriving meanwhile merge; a room quiet for an
// interval loses its state and goroutine. Handlers append to the state and
// wait for their batch's done channel.

const roomShards = 64

type roomTable struct {
	seed   maphash.Seed
	shards [roomShards]roomShard
}

type roomShard struct {
	mu sync.Mutex
	m  map[string]*roomState
}

func (t *roomTable) init() {
	t.seed = maphash.MakeSeed()
	for i := range t.shards {
		t.shards[i].m = make(map[string]*roomState)
	}
}

func (t *roomTable) shard(room string) *roomShard {
	return &t.shards[maphash.String(t.seed, room)%roomShards]
}

type roomState struct {
	name string
	kick chan struct{} // capacity 1: a batch filled up

	mu      sync.Mutex
	batches []*roomBatch // pending, oldest first; only the last is open
	last    time.Time    // start of the last flush
}

// roomBatch is the body of one Op 9 packet: encoded packets back to back.
// Its buffer is never reused after the flush: comets may keep it queued.
type roomBatch struct {
	buf  []byte
	n    int
	done chan struct{} // closed once every comet call for it returned
}

// roomGroups groups a handler batch's room messages by room, in order.
type roomGroups struct {
	index map[string]int
	list  []roomGroup
}

type roomGroup struct {
	room string
	msgs []*pushmsg.Msg
}

func (g *roomGroups) add(m *pushmsg.Msg) {
	if g.index == nil {
		g.index = make(map[string]int)
	}
	i, ok := g.index[m.Room]
	if !ok {
		i = len(g.list)
		g.index[m.Room] = i
		g.list = append(g.list, roomGroup{room: m.Room})
	}
	g.list[i].msgs = append(g.list[i].msgs, m)
}

// enqueueRooms appends every room's messages to its pending batches and
// returns, per room, the batch holding its last message (flushes of a room
// are sequential, so that one's done implies the others').
func (j *Job) enqueueRooms(g *roomGroups) []*roomBatch {
	if len(g.list) == 0 {
		return nil
	}
	waits := make([]*roomBatch, 0, len(g.list))
	for _, rg := range g.list {
		sh := j.rooms.shard(rg.room)
		sh.mu.Lock()
		r := sh.m[rg.room]
		if r == nil {
			r = &roomState{name: rg.room, kick: make(chan struct{}, 1)}
			sh.m[rg.room] = r
			j.wg.Add(1) // the handler holds a count: no race with Wait
			go j.runRoom(sh, r)
		}
		r.mu.Lock()
		sh.mu.Unlock()
		rest := 0 // bytes still to append, to size new batches
		for _, m := range rg.msgs {
			rest += protocol.HeaderLen + len(m.Body)
		}
		var b *roomBatch
		for _, m := range rg.msgs {
			p := packet(m)
			b = r.append(p, rest, j.cfg.MaxBatchBytes, j.cfg.MaxBatchMsgs)
			rest -= p.Size()
		}
		full := len(r.batches) > 1 || r.full(j.cfg.MaxBatchBytes, j.cfg.MaxBatchMsgs)
		r.mu.Unlock()
		if full {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
		waits = append(waits, b)
	}
	return waits
}

// append encodes p into the open batch, opening a new one when it would
// exceed a limit; hint is the size of p plus the packets that will follow at
// once. r.mu must be held.
func (r *roomState) append(p protocol.Packet, hint, maxBytes, maxMsgs int) *roomBatch {
	var b *roomBatch
	if n := len(r.batches); n > 0 {
		b = r.batches[n-1]
		if b.n >= maxMsgs || (b.n > 0 && len(b.buf)+p.Size() > maxBytes) {
			b = nil
		}
	}
	if b == nil {
		b = &roomBatch{buf: make([]byte, 0, max(p.Size(), min(hint, maxBytes))), done: make(chan struct{})}
		r.batches = append(r.batches, b)
	}
	b.buf = protocol.Append(b.buf, p)
	b.n++
	return b
}

// full reports whether the open batch reached a limit. r.mu must be held.
func (r *roomState) full(maxBytes, maxMsgs int) bool {
	n := len(r.batches)
	return n > 0 && (r.batches[n-1].n >= maxMsgs || len(r.batches[n-1].buf) >= maxBytes)
}

// runRoom is a room's flusher.
func (j *Job) runRoom(sh *roomShard, r *roomState) {
	defer j.wg.Done()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		draining := isClosed(j.drain)
		r.mu.Lock()
		wait := r.last.Add(j.cfg.FlushInterval).Sub(j.now())
		if r.last.IsZero() {
			wait = 0
		}
		if len(r.batches) > 0 && (wait <= 0 || draining || len(r.batches) > 1 ||
			r.full(j.cfg.MaxBatchBytes, j.cfg.MaxBatchMsgs)) {
			batches := r.batches
			r.batches = nil
			r.last = j.now()
			r.mu.Unlock()
			j.flushRoom(r.name, batches)
			continue
		}
		empty := len(r.batches) == 0
		r.mu.Unlock()

		if empty && (wait <= 0 || draining) {
			// Quiet for an interval: retire, unless a message just came.
			sh.mu.Lock()
			r.mu.Lock()
			if len(r.batches) == 0 {
				delete(sh.m, r.name)
				r.mu.Unlock()
				sh.mu.Unlock()
				return
			}
			r.mu.Unlock()
			sh.mu.Unlock()
			continue
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		// Go 1.23+ timers: Stop and Reset leave no stale tick behind.
		select {
		case <-timer.C:
		case <-r.kick:
			timer.Stop()
		case <-j.drain:
			timer.Stop()
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// flushRoom sends batches, in order, to every comet with members in room,
// concurrently across comets, and closes their done channels.
func (j *Job) flushRoom(room string, batches []*roomBatch) {
	defer func() {
		for _, b := range batches {
			close(b.done)
		}
	}()
	for _, b := range batches {
		metricRoomBatches.Inc()
		metricRoomBatchSize.Observe(float64(b.n))
	}
	// One deadline for the whole flush: lookup and every comet's pushes.
	ctx, cancel := context.WithTimeout(j.push, j.cfg.PushTimeout)
	defer cancel()
	servers, err := j.deps.Sessions.RoomServers(ctx, room)
	if err != nil {
		metricPushErrors.WithLabelValues(typeRoom).Inc()
		j.errLog.warn("room_servers", "job: RoomServers failed, dropping room batch", "room", room, "err", err)
		return
	}
	var wg sync.WaitGroup
	for i, server := range servers {
		c, ok := j.deps.Comets.Comet(server)
		if !ok {
			// Listed by a report but not (or no longer) reachable.
			droppedUnknown.Inc()
			j.errLog.warn("unknown_server", "job: room has members on an unknown comet", "room", room, "server", server)
			continue
		}
		push := func() {
			for _, b := range batches {
				if err := c.PushRoom(ctx, room, b.buf); err != nil {
					metricPushErrors.WithLabelValues(typeRoom).Inc()
					j.errLog.warn("push_room", "job: PushRoom failed", "room", room, "server", server, "err", err)
				}
			}
		}
		if i == len(servers)-1 {
			push() // the last one inline
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			push()
		}()
	}
	wg.Wait()
}

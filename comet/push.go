package comet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/goimdev/goim/protocol"
)

// PushKeys delivers p to the connections with the given routing keys on
// this comet; unknown keys are skipped. A business op (>= 1000) reaches only
// connections whose accepts list has it. p is encoded once.
func (s *Server) PushKeys(ctx context.Context, keys []string, p protocol.Packet) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("comet: push keys: %w", err)
	}
	metricPushKeys.Inc()
	var sh shared
	for _, k := range keys {
		b := s.bucket(k)
		b.mu.RLock()
		c := b.chs[k]
		b.mu.RUnlock()
		if c == nil {
			continue
		}
		if sh.buf == nil {
			sh = sharePacket(p)
		}
		c.push(p.Op, sh.bytes(c.tr), true)
	}
	return nil
}

// PushRoom delivers a batch (the body of an Op 9 packet: complete packets
// back to back) to every local member of room, whatever its accepts: TCP
// connections get the inner packets as they are, WebSocket connections one
// frame holding the Op 9 packet. The batch is copied once, so the caller
// may reuse it.
func (s *Server) PushRoom(ctx context.Context, room string, batch []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("comet: push room: %w", err)
	}
	if len(batch) == 0 {
		return errors.New("comet: push room: empty batch")
	}
	if err := protocol.SplitBatch(batch, func(protocol.Packet) error { return nil }); err != nil {
		return fmt.Errorf("comet: push room: bad batch: %w", err)
	}
	metricPushRoom.Inc()
	// The members are copied under the bucket lock and pushed after it, so
	// that joins and leaves of the bucket's rooms do not wait for the
	// pushes (nor for the writers they start).
	b := s.bucket(room)
	b.mu.RLock()
	r := b.rooms[room]
	if r == nil || r.head == nil {
		b.mu.RUnlock()
		return nil
	}
	ps := memberPool.Get().(*[]*conn)
	members := (*ps)[:0]
	for c := r.head; c != nil; c = c.rnext {
		members = append(members, c)
	}
	b.mu.RUnlock()
	sh := shareBatch(batch)
	for _, c := range members {
		c.push(protocol.OpRaw, sh.bytes(c.tr), false)
	}
	if cap(members) <= maxPooledMembers {
		clear(members)
		*ps = members[:0]
		memberPool.Put(ps)
	}
	return nil
}

// memberPool holds the slices PushRoom copies a room's members into.
var memberPool = sync.Pool{New: func() any {
	s := make([]*conn, 0, 64)
	return &s
}}

// maxPooledMembers: a larger member slice (a huge room) is left to the GC.
const maxPooledMembers = 64 << 10

// Broadcast delivers p to every authenticated connection that accepts p.Op
// (IM ops below 1000 reach all). With speed > 0 it queues to at most speed
// connections per second and so returns after about conns/speed seconds;
// ctx cancels what is left.
func (s *Server) Broadcast(ctx context.Context, p protocol.Packet, speed int32) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("comet: broadcast: %w", err)
	}
	metricPushAll.Inc()
	sh := sharePacket(p)
	var conns []*conn
	start := time.Now()
	sent := 0
	step := max(int(speed)/20, 1) // pace in steps of 50ms worth of connections
	for _, b := range s.buckets {
		conns = conns[:0]
		b.mu.RLock()
		for _, c := range b.chs {
			conns = append(conns, c)
		}
		b.mu.RUnlock()
		for _, c := range conns {
			c.push(p.Op, sh.bytes(c.tr), true)
			sent++
			if speed > 0 && sent%step == 0 {
				due := start.Add(time.Duration(sent) * time.Second / time.Duration(speed))
				if d := time.Until(due); d > 0 && !sleepCtx(ctx, d) {
					return fmt.Errorf("comet: broadcast: %w", ctx.Err())
				}
			}
		}
	}
	return nil
}

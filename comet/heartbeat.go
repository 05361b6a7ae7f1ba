package comet

import (
	"context"
	"sync"
	"time"
)

// hbBatch collects the session refreshes of the connections for a
// HeartbeatBatcher logic: readers append (no RPC on their path), and
// heartbeatLoop sends what was collected every HeartbeatFlush.
type hbBatch struct {
	b     HeartbeatBatcher
	mu    sync.Mutex
	conns []ConnRef
}

// hbMaxBatch bounds one Heartbeats call; more is sent in several.
const hbMaxBatch = 4096

func (h *hbBatch) add(r ConnRef) {
	h.mu.Lock()
	h.conns = append(h.conns, r)
	h.mu.Unlock()
}

func (h *hbBatch) take() []ConnRef {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.conns
	h.conns = nil
	return out
}

// heartbeatLoop flushes the collected heartbeats every HeartbeatFlush, and
// once more when the server stops.
func (s *Server) heartbeatLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.HeartbeatFlush)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			s.flushHeartbeats()
			return
		case <-t.C:
			s.flushHeartbeats()
		}
	}
}

func (s *Server) flushHeartbeats() {
	conns := s.hb.take()
	for len(conns) > 0 {
		n := min(len(conns), hbMaxBatch)
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LogicTimeout)
		if err := s.hb.b.Heartbeats(ctx, s.cfg.Node, conns[:n]); err != nil {
			// The sessions expire only after several missed refreshes; the
			// connections' next heartbeats try again.
			s.log.Warn("comet: Logic.Heartbeats failed", "conns", n, "err", err)
		}
		cancel()
		conns = conns[n:]
	}
}

package msgcache

import (
	"container/list"
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/goimdev/goim/internal/store"
)

// MemoryConfig configures the in-process backend. Zero values take the
// default documented on each field.
type MemoryConfig struct {
	// WindowSize is K, the most recent messages kept per conversation.
	// Default 200 (a few history pages).
	WindowSize int `yaml:"window_size"`
	// MaxConversations bounds the conversations held; the least recently
	// used window is evicted beyond it. Default 10000 (with 200 messages of
	// ~300 bytes: ~600 MB; MaxBytes bounds the total anyway).
	MaxConversations int `yaml:"max_conversations"`
	// MaxBytes bounds the memory held (message contents plus ~200 bytes
	// per message); least recently used windows are evicted beyond it.
	// Default 256 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
}

// DefaultMemoryConfig returns the default configuration.
func DefaultMemoryConfig() MemoryConfig {
	return MemoryConfig{WindowSize: 200, MaxConversations: 10_000, MaxBytes: 256 << 20}
}

const memShards = 16

// Memory is the in-process Backend: per conversation the last K messages,
// an LRU over conversations. It never fails.
type Memory struct {
	k      int
	seed   maphash.Seed
	now    func() time.Time
	shards [memShards]memShard
}

type memShard struct {
	mu       sync.Mutex
	max      int
	maxBytes int64
	bytes    int64 // sum of the windows' sizes
	wins     map[string]*memWindow
	lru      list.List // of *memWindow, most recent first
	fence    map[string]time.Time
}

type memWindow struct {
	conv  string
	msgs  []store.Message // ascending, consecutive seqs, at most k
	bytes int64           // sum of msgSize over msgs
	elem  *list.Element
}

// msgSize approximates the memory a cached message holds.
func msgSize(m *store.Message) int64 {
	return 200 + int64(len(m.Content)+len(m.ClientMsgID)+8*len(m.Mentions)+len(m.ConversationID))
}

func sizeOf(msgs []store.Message) int64 {
	var n int64
	for i := range msgs {
		n += msgSize(&msgs[i])
	}
	return n
}

var _ Backend = (*Memory)(nil)

// NewMemory returns an in-process backend.
func NewMemory(cfg MemoryConfig) *Memory {
	d := DefaultMemoryConfig()
	if cfg.WindowSize <= 0 {
		cfg.WindowSize = d.WindowSize
	}
	if cfg.MaxConversations <= 0 {
		cfg.MaxConversations = d.MaxConversations
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = d.MaxBytes
	}
	m := &Memory{k: cfg.WindowSize, seed: maphash.MakeSeed(), now: time.Now}
	per := max(1, (cfg.MaxConversations+memShards-1)/memShards)
	for i := range m.shards {
		m.shards[i].max = per
		m.shards[i].maxBytes = max(1, cfg.MaxBytes/memShards)
		m.shards[i].wins = make(map[string]*memWindow)
		m.shards[i].fence = make(map[string]time.Time)
	}
	return m
}

// Name returns "memory".
func (m *Memory) Name() string { return "memory" }

func (m *Memory) shard(conv string) *memShard {
	return &m.shards[maphash.String(m.seed, conv)%memShards]
}

// Append appends runs to their windows.
func (m *Memory) Append(_ context.Context, runs ...Run) (int, error) {
	gaps := 0
	now := m.now()
	for _, r := range runs {
		if len(r.Msgs) == 0 {
			continue
		}
		s := m.shard(r.ConvID)
		s.mu.Lock()
		if until, ok := s.fence[r.ConvID]; ok {
			if now.Before(until) {
				s.mu.Unlock()
				continue
			}
			delete(s.fence, r.ConvID)
		}
		w := s.wins[r.ConvID]
		if w == nil {
			w = &memWindow{conv: r.ConvID}
			w.elem = s.lru.PushFront(w)
			s.wins[r.ConvID] = w
		} else {
			s.lru.MoveToFront(w.elem)
			if n := len(w.msgs); n > 0 && w.msgs[n-1].Seq+1 != r.Msgs[0].Seq {
				clear(w.msgs)
				w.msgs = w.msgs[:0]
				s.bytes -= w.bytes
				w.bytes = 0
				gaps++
			}
		}
		msgs := r.Msgs
		if len(msgs) > m.k {
			msgs = msgs[len(msgs)-m.k:]
		}
		if over := len(w.msgs) + len(msgs) - m.k; over > 0 {
			// Keep the last k: shift in place (k is small).
			freed := sizeOf(w.msgs[:over])
			w.bytes -= freed
			s.bytes -= freed
			n := copy(w.msgs, w.msgs[over:])
			clear(w.msgs[n:])
			w.msgs = w.msgs[:n]
		}
		w.msgs = append(w.msgs, msgs...)
		added := sizeOf(msgs)
		w.bytes += added
		s.bytes += added
		s.evict()
		s.mu.Unlock()
	}
	return gaps, nil
}

// evict drops the least recently used windows beyond the shard's bound
// (s.mu held).
func (s *memShard) evict() {
	for len(s.wins) > s.max || (s.bytes > s.maxBytes && len(s.wins) > 1) {
		s.remove(s.lru.Back().Value.(*memWindow))
		metricEvictions.Inc()
	}
}

// remove deletes w (s.mu held).
func (s *memShard) remove(w *memWindow) {
	s.lru.Remove(w.elem)
	delete(s.wins, w.conv)
	s.bytes -= w.bytes
}

// Window returns convID's bounds and its messages in [from, to].
func (m *Memory) Window(_ context.Context, convID string, from, to int64) (Window, error) {
	s := m.shard(convID)
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.wins[convID]
	if w == nil || len(w.msgs) == 0 {
		return Window{}, nil
	}
	s.lru.MoveToFront(w.elem)
	lo, hi := w.msgs[0].Seq, w.msgs[len(w.msgs)-1].Seq
	out := Window{Lo: lo, Hi: hi}
	from, to = max(from, lo), min(to, hi)
	if from <= to {
		out.Msgs = append([]store.Message(nil), w.msgs[from-lo:to-lo+1]...)
	}
	return out, nil
}

// Drop deletes windows, fencing them for fence when positive.
func (m *Memory) Drop(_ context.Context, fence time.Duration, convIDs ...string) error {
	now := m.now()
	for _, id := range convIDs {
		s := m.shard(id)
		s.mu.Lock()
		if w := s.wins[id]; w != nil {
			s.remove(w)
		}
		if fence > 0 {
			if len(s.fence) > 4*s.max {
				for k, until := range s.fence { // drop expired fences
					if !now.Before(until) {
						delete(s.fence, k)
					}
				}
			}
			s.fence[id] = now.Add(fence)
		}
		s.mu.Unlock()
	}
	return nil
}

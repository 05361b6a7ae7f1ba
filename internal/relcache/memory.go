package relcache

import (
	"context"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryConfig configures the in-process backend. Zero values take the
// default documented on each field.
type MemoryConfig struct {
	// Shards is the number of independently locked shards, rounded up to a
	// power of two. Default 64.
	Shards int `yaml:"shards"`
	// MaxEntries bounds the number of entries (values and leases); beyond
	// it a shard evicts its least recently hit entries (CLOCK). An entry
	// costs about 150 bytes with the map overhead. Default 500000.
	MaxEntries int `yaml:"max_entries"`
	// LeaseTTL is how long a miss keeps the right to fill its key; a fill
	// that takes longer is dropped. Default 2s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time `yaml:"-"`
}

// DefaultMemoryConfig returns the default configuration.
func DefaultMemoryConfig() MemoryConfig {
	return MemoryConfig{
		Shards:     64,
		MaxEntries: 500_000,
		LeaseTTL:   2 * time.Second,
		Now:        time.Now,
	}
}

func (c MemoryConfig) withDefaults() MemoryConfig {
	d := DefaultMemoryConfig()
	if c.Shards <= 0 {
		c.Shards = d.Shards
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = d.MaxEntries
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = d.LeaseTTL
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Memory is the in-process Backend: a sharded map with per-entry expiry
// and a CLOCK-evicted size bound. A hit takes a shard's read lock only.
type Memory struct {
	shards   []memShard
	mask     uint64
	perShard int
	leaseTTL int64
	now      func() time.Time
	leaseSeq atomic.Uint64
}

var _ Backend = (*Memory)(nil)

type memShard struct {
	mu   sync.RWMutex
	m    map[Key]*memEntry
	ring []*memEntry // every entry of m, in CLOCK order
	hand int
	_    [64]byte // keep shards' locks on separate cache lines
}

type memEntry struct {
	key     Key
	val     Value
	lease   uint64 // non-zero: the entry is a lease, val is unset
	expires int64  // UnixNano
	idx     int    // position in ring
	ref     atomic.Uint32
}

// NewMemory returns an empty in-process backend.
func NewMemory(cfg MemoryConfig) *Memory {
	cfg = cfg.withDefaults()
	n := 1 << bits.Len(uint(cfg.Shards-1))
	m := &Memory{
		shards:   make([]memShard, n),
		mask:     uint64(n - 1),
		perShard: max(1, cfg.MaxEntries/n),
		leaseTTL: int64(cfg.LeaseTTL),
		now:      cfg.Now,
	}
	for i := range m.shards {
		m.shards[i].m = make(map[Key]*memEntry)
	}
	return m
}

// Name returns "memory".
func (m *Memory) Name() string { return "memory" }

// Len returns the number of entries, values and leases, expired ones
// included until they are evicted or replaced.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

func (k Key) hash() uint64 {
	h := uint64(k.A)*0x9e3779b97f4a7c15 ^ uint64(k.B)*0xc2b2ae3d27d4eb4f ^ uint64(k.Kind)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

func (m *Memory) shard(k Key) *memShard { return &m.shards[k.hash()&m.mask] }

func (m *Memory) newLease() uint64 { return m.leaseSeq.Add(1) }

// peek reads k under the read lock: live is false when k holds nothing
// live, busy when it holds a live lease.
func (s *memShard) peek(k Key, now int64) (r Result, live bool) {
	e := s.m[k]
	if e == nil || now >= e.expires {
		return Result{}, false
	}
	if e.lease != 0 {
		return Result{}, true
	}
	if e.ref.Load() == 0 {
		e.ref.Store(1)
	}
	return Result{Value: e.val, Hit: true}, true
}

// Get looks k up, leasing it when it holds nothing live.
func (m *Memory) Get(_ context.Context, k Key) (Result, error) {
	return m.get(k, m.now().UnixNano()), nil
}

func (m *Memory) get(k Key, now int64) Result {
	s := m.shard(k)
	s.mu.RLock()
	r, live := s.peek(k, now)
	s.mu.RUnlock()
	if live {
		return r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, live := s.peek(k, now); live {
		return r
	}
	r.Lease = m.newLease()
	s.put(k, r.Lease, Value{}, now+m.leaseTTL, now, m.perShard)
	return r
}

// Get2 looks a group key and a member key up.
func (m *Memory) Get2(_ context.Context, k1, k2 Key) (r1, r2 Result, err error) {
	now := m.now().UnixNano()
	return m.get(k1, now), m.get(k2, now), nil
}

// Lease leases k, replacing its value, unless another lease is live.
func (m *Memory) Lease(_ context.Context, k Key) (uint64, error) {
	now := m.now().UnixNano()
	s := m.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[k]; e != nil && e.lease != 0 && now < e.expires {
		return 0, nil
	}
	l := m.newLease()
	s.put(k, l, Value{}, now+m.leaseTTL, now, m.perShard)
	return l, nil
}

// Set stores (or releases) the items whose keys still hold their leases.
func (m *Memory) Set(_ context.Context, items ...Item) error {
	now := m.now().UnixNano()
	for _, it := range items {
		if it.Lease == 0 {
			continue
		}
		s := m.shard(it.Key)
		s.mu.Lock()
		if e := s.m[it.Key]; e != nil && e.lease == it.Lease {
			if it.TTL <= 0 {
				delete(s.m, it.Key)
				s.removeRing(e)
			} else {
				e.val, e.lease, e.expires = it.Value, 0, now+int64(it.TTL)
				e.ref.Store(0)
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// Delete removes keys.
func (m *Memory) Delete(_ context.Context, keys ...Key) error {
	for _, k := range keys {
		s := m.shard(k)
		s.mu.Lock()
		if e := s.m[k]; e != nil {
			delete(s.m, k)
			s.removeRing(e)
		}
		s.mu.Unlock()
	}
	return nil
}

// put stores k (a lease when lease != 0) in place, or as a new entry,
// evicting one if the shard is full. s.mu is held.
func (s *memShard) put(k Key, lease uint64, v Value, expires, now int64, limit int) {
	if e := s.m[k]; e != nil {
		e.val, e.lease, e.expires = v, lease, expires
		e.ref.Store(0)
		return
	}
	e := &memEntry{key: k, val: v, lease: lease, expires: expires}
	if len(s.ring) < limit {
		e.idx = len(s.ring)
		s.ring = append(s.ring, e)
	} else {
		e.idx = s.evict(now)
		s.ring[e.idx] = e
	}
	s.m[k] = e
}

// evict removes one entry, an expired or not recently hit one, and returns
// its ring slot. Two turns of the hand always find one: the first clears
// every reference bit it passes.
func (s *memShard) evict(now int64) int {
	n := len(s.ring)
	for range 2 * n {
		if s.hand >= n {
			s.hand = 0
		}
		i := s.hand
		s.hand++
		e := s.ring[i]
		if now >= e.expires || e.ref.Load() == 0 {
			delete(s.m, e.key)
			metricEvictions.Inc()
			return i
		}
		e.ref.Store(0)
	}
	// Unreachable (see above); evict at the hand rather than fail.
	i := s.hand % n
	delete(s.m, s.ring[i].key)
	metricEvictions.Inc()
	return i
}

// removeRing takes e out of the ring, moving the last entry into its slot.
func (s *memShard) removeRing(e *memEntry) {
	last := len(s.ring) - 1
	if e.idx != last {
		moved := s.ring[last]
		s.ring[e.idx] = moved
		moved.idx = e.idx
	}
	s.ring[last] = nil
	s.ring = s.ring[:last]
	if s.hand > last {
		s.hand = 0
	}
}

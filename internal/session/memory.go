package session

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var memExpired = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "goim_session_memory_expired_total",
	Help: "Entries removed from the in-memory session registry because they expired.",
}, []string{"kind"}) // kind: session, server

// MemoryConfig configures the in-memory registry. Zero values take the
// default documented on each field.
type MemoryConfig struct {
	// Shards is the number of independently locked shards of the user and
	// key maps. Default 64.
	Shards int `yaml:"shards"`
	// SessionTTL is how long a session lives without Add or Touch. Comets
	// touch a session at most once per heartbeat interval per connection
	// (30 s by default), so the default of 5m leaves ample margin; it only
	// matters when a comet dies without Remove: its sessions then stop
	// routing after SessionTTL. Expiry is lazy: expired sessions are
	// invisible at once and their memory is reclaimed by an amortised sweep
	// of a shard at most once per SessionTTL, on writes.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// ServerTTL is how long a comet's report (SetServer) stays valid: a
	// comet that has not reported within it disappears from Servers,
	// RoomServers and RoomCounts. Default 30s, three times the comets'
	// default 10 s report interval.
	ServerTTL time.Duration `yaml:"server_ttl"`
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time `yaml:"-"`
}

// DefaultMemoryConfig returns the default configuration.
func DefaultMemoryConfig() MemoryConfig {
	return MemoryConfig{
		Shards:     64,
		SessionTTL: 5 * time.Minute,
		ServerTTL:  30 * time.Second,
		Now:        time.Now,
	}
}

func (c MemoryConfig) withDefaults() MemoryConfig {
	d := DefaultMemoryConfig()
	if c.Shards <= 0 {
		c.Shards = d.Shards
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = d.SessionTTL
	}
	if c.ServerTTL <= 0 {
		c.ServerTTL = d.ServerTTL
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Memory is the in-process session registry of the one-process server.
// Sessions live in two sharded maps kept consistent under their locks
// (always taken user shard first, then key shard): user -> key -> session,
// and key -> session for KeyOwner and KeyServers. Comet reports live in one
// map guarded by a RWMutex, with a room -> servers index so that RoomServers,
// on job's hot path, costs one map lookup.
type Memory struct {
	cfg   MemoryConfig
	now   func() time.Time
	seed  maphash.Seed
	users []userShard
	keys  []keyShard

	srvMu   sync.RWMutex
	servers map[string]*serverState
	rooms   map[string]map[string]struct{} // room -> servers reporting or marking it
}

var _ Registry = (*Memory)(nil)

type entry struct {
	s       Session
	touched atomic.Int64 // unix nanos of the last Add or Touch
}

type userShard struct {
	mu        sync.RWMutex
	m         map[int64]devices
	lastSweep time.Time
}

// devices are one user's sessions, at most one per key. A user has a
// handful of devices: a slice costs far less per user than a map.
type devices []*entry

func (d devices) get(key string) *entry {
	for _, e := range d {
		if e.s.Key == key {
			return e
		}
	}
	return nil
}

// set stores e, replacing the entry with the same key.
func (d devices) set(e *entry) devices {
	for i, old := range d {
		if old.s.Key == e.s.Key {
			d[i] = e
			return d
		}
	}
	return append(d, e)
}

// del removes e itself (not another entry with its key); ok is false when e
// is not in d.
func (d devices) del(e *entry) (_ devices, ok bool) {
	for i, old := range d {
		if old == e {
			last := len(d) - 1
			d[i] = d[last]
			d[last] = nil
			return d[:last], true
		}
	}
	return d, false
}

type keyShard struct {
	mu sync.RWMutex
	m  map[string]*entry
}

type serverState struct {
	info     ServerInfo
	reported bool // false for a server only known through AddRoom
	expires  time.Time
	rooms    map[string]int32     // from the last report
	marks    map[string]time.Time // AddRoom marks (registry clock) not cleared by a report yet
}

// NewMemory returns an empty in-memory registry.
func NewMemory(cfg MemoryConfig) *Memory {
	cfg = cfg.withDefaults()
	m := &Memory{
		cfg:     cfg,
		now:     cfg.Now,
		seed:    maphash.MakeSeed(),
		users:   make([]userShard, cfg.Shards),
		keys:    make([]keyShard, cfg.Shards),
		servers: make(map[string]*serverState),
		rooms:   make(map[string]map[string]struct{}),
	}
	now := m.now()
	for i := range m.users {
		m.users[i].m = make(map[int64]devices)
		m.users[i].lastSweep = now
		m.keys[i].m = make(map[string]*entry)
	}
	return m
}

func (m *Memory) userShard(uid int64) *userShard {
	// Fibonacci hashing spreads sequential ids.
	h := uint64(uid) * 0x9E3779B97F4A7C15
	return &m.users[(h>>32)%uint64(len(m.users))]
}

func (m *Memory) keyShard(key string) *keyShard {
	return &m.keys[maphash.String(m.seed, key)%uint64(len(m.keys))]
}

func (m *Memory) live(e *entry, now time.Time) bool {
	return now.UnixNano()-e.touched.Load() < int64(m.cfg.SessionTTL)
}

var errInvalidSession = errors.New("session: session needs a key and a server")

// Add records s, replacing a previous session with the same user and key.
func (m *Memory) Add(_ context.Context, s Session) error {
	if s.Key == "" || s.Server == "" {
		return errInvalidSession
	}
	now := m.now()
	us := m.userShard(s.UserID)
	us.mu.Lock()
	defer us.mu.Unlock()
	if !m.put(us, s, now) {
		return ErrKeyInUse
	}
	m.maybeSweep(us, now)
	return nil
}

// put stores s as a new entry, unless another user's live session holds
// s.Key (it reports false then and changes nothing). us.mu must be held.
func (m *Memory) put(us *userShard, s Session, now time.Time) bool {
	ks := m.keyShard(s.Key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if held := ks.m[s.Key]; held != nil && held.s.UserID != s.UserID && m.live(held, now) {
		return false
	}
	e := &entry{s: s}
	e.touched.Store(now.UnixNano())
	us.m[s.UserID] = us.m[s.UserID].set(e)
	ks.m[s.Key] = e
	return true
}

// Remove deletes the session of (userID, key) if it is connection connID's
// on server. It reports false when there is none, it is another
// connection's, or it had expired.
func (m *Memory) Remove(_ context.Context, userID int64, key, server, connID string) (bool, error) {
	now := m.now()
	us := m.userShard(userID)
	us.mu.Lock()
	defer us.mu.Unlock()
	e := us.m[userID].get(key)
	if e == nil || e.s.Server != server || e.s.ConnID != connID {
		return false, nil
	}
	m.del(us, e)
	return m.live(e, now), nil
}

// del removes e from both maps. us.mu must be held.
func (m *Memory) del(us *userShard, e *entry) {
	if devs, ok := us.m[e.s.UserID].del(e); ok {
		if len(devs) == 0 {
			delete(us.m, e.s.UserID)
		} else {
			us.m[e.s.UserID] = devs
		}
	}
	ks := m.keyShard(e.s.Key)
	ks.mu.Lock()
	if ks.m[e.s.Key] == e {
		delete(ks.m, e.s.Key)
	}
	ks.mu.Unlock()
}

// Touch refreshes the liveness of s. When the registry has no live session
// for (s.UserID, s.Key) it adds s, so that the registry rebuilds itself from
// heartbeats after a restart; when the key's live session is another
// connection's (the device reconnected, here or elsewhere) or another user's,
// it leaves that one alone.
func (m *Memory) Touch(_ context.Context, s Session) error {
	if s.Key == "" || s.Server == "" {
		return errInvalidSession
	}
	now := m.now()
	us := m.userShard(s.UserID)
	us.mu.RLock()
	e := us.m[s.UserID].get(s.Key)
	if e != nil && m.live(e, now) {
		if sameConn(e.s, s) {
			e.touched.Store(now.UnixNano())
		}
		us.mu.RUnlock()
		return nil
	}
	us.mu.RUnlock()

	us.mu.Lock()
	defer us.mu.Unlock()
	e = us.m[s.UserID].get(s.Key)
	switch {
	case e == nil || !m.live(e, now):
		m.put(us, s, now) // refused (false) when another user holds the key
	case sameConn(e.s, s):
		e.touched.Store(now.UnixNano())
	}
	m.maybeSweep(us, now)
	return nil
}

// sameConn reports whether a and b are the session of one connection.
func sameConn(a, b Session) bool { return a.Server == b.Server && a.ConnID == b.ConnID }

// maybeSweep deletes the shard's expired sessions at most once per
// SessionTTL. us.mu must be held for writing.
func (m *Memory) maybeSweep(us *userShard, now time.Time) {
	if now.Sub(us.lastSweep) < m.cfg.SessionTTL {
		return
	}
	us.lastSweep = now
	n := 0
	var dead []*entry
	for _, devs := range us.m {
		for _, e := range devs {
			if !m.live(e, now) {
				dead = append(dead, e)
			}
		}
	}
	for _, e := range dead {
		m.del(us, e)
		n++
	}
	if n > 0 {
		memExpired.WithLabelValues("session").Add(float64(n))
	}
}

// UserSessions returns the live sessions of each of userIDs, each user's
// sorted by key.
func (m *Memory) UserSessions(_ context.Context, userIDs []int64) (map[int64][]Session, error) {
	now := m.now()
	out := make(map[int64][]Session, len(userIDs))
	for _, uid := range userIDs {
		if _, done := out[uid]; done {
			continue
		}
		us := m.userShard(uid)
		us.mu.RLock()
		devs := us.m[uid]
		var ss []Session
		for _, e := range devs {
			if m.live(e, now) {
				ss = append(ss, e.s)
			}
		}
		us.mu.RUnlock()
		if len(ss) > 0 {
			sort.Slice(ss, func(i, j int) bool { return ss[i].Key < ss[j].Key })
			out[uid] = ss
		}
	}
	return out, nil
}

// KeyOwner returns the user and server of key's live session.
func (m *Memory) KeyOwner(_ context.Context, key string) (int64, string, bool, error) {
	now := m.now()
	ks := m.keyShard(key)
	ks.mu.RLock()
	e := ks.m[key]
	ks.mu.RUnlock()
	if e == nil || !m.live(e, now) {
		return 0, "", false, nil
	}
	return e.s.UserID, e.s.Server, true, nil
}

// KeyServers returns the server of each key that has a live session.
func (m *Memory) KeyServers(_ context.Context, keys []string) (map[string]string, error) {
	now := m.now()
	out := make(map[string]string, len(keys))
	for _, key := range keys {
		ks := m.keyShard(key)
		ks.mu.RLock()
		e := ks.m[key]
		ks.mu.RUnlock()
		if e != nil && m.live(e, now) {
			out[key] = e.s.Server
		}
	}
	return out, nil
}

// markSlack is how far a comet's clock (ServerInfo.TakenAt) may run ahead of
// the registry's without losing a mark: SetServer keeps the marks made less
// than markSlack before TakenAt too. Keeping a mark too long only lists the
// server for its room until the next report.
const markSlack = time.Second

// SetServer records a comet's report. info.UpdatedAt is set to the
// registry's clock. rooms is copied. The report is valid for ServerTTL and
// clears the server's AddRoom marks made before info.TakenAt (less
// markSlack); a zero TakenAt clears them all.
func (m *Memory) SetServer(_ context.Context, info ServerInfo, rooms map[string]int32) error {
	if info.Name == "" {
		return errors.New("session: server report without a name")
	}
	now := m.now()
	info.UpdatedAt = now
	cp := make(map[string]int32, len(rooms))
	for r, n := range rooms {
		if r != "" && n > 0 {
			cp[r] = n
		}
	}
	m.srvMu.Lock()
	defer m.srvMu.Unlock()
	m.sweepServers(now)
	st := m.servers[info.Name]
	if st == nil {
		st = &serverState{}
		m.servers[info.Name] = st
	}
	cutoff := now
	if !info.TakenAt.IsZero() {
		cutoff = info.TakenAt.Add(-markSlack)
	}
	var marks map[string]time.Time
	for r, at := range st.marks {
		if !at.Before(cutoff) {
			if marks == nil {
				marks = make(map[string]time.Time)
			}
			marks[r] = at
		}
	}
	kept := func(r string) bool {
		_, inReport := cp[r]
		_, marked := marks[r]
		return inReport || marked
	}
	for r := range st.rooms {
		if !kept(r) {
			m.unindex(r, info.Name)
		}
	}
	for r := range st.marks {
		if _, reported := st.rooms[r]; !reported && !kept(r) {
			m.unindex(r, info.Name)
		}
	}
	for r := range cp {
		m.index(r, info.Name)
	}
	st.info = info
	st.reported = true
	st.expires = now.Add(m.cfg.ServerTTL)
	st.rooms = cp
	st.marks = marks
	return nil
}

// AddRoom marks room as present on server until a report of the server
// whose snapshot is later than the mark (see SetServer). The mark is made
// even for a room of the last report: the room may have emptied and filled
// again since that report's snapshot.
// A server not known yet (its first report is still to come) is recorded
// for RoomServers only, for ServerTTL.
func (m *Memory) AddRoom(_ context.Context, server, room string) error {
	if server == "" || room == "" {
		return errors.New("session: AddRoom needs a server and a room")
	}
	now := m.now()
	m.srvMu.Lock()
	defer m.srvMu.Unlock()
	st := m.servers[server]
	if st != nil && !now.Before(st.expires) {
		m.dropServer(server, st)
		st = nil
	}
	if st == nil {
		st = &serverState{info: ServerInfo{Name: server}, expires: now.Add(m.cfg.ServerTTL)}
		m.servers[server] = st
	}
	if st.marks == nil {
		st.marks = make(map[string]time.Time)
	}
	st.marks[room] = now
	m.index(room, server)
	return nil
}

func (m *Memory) index(room, server string) {
	set := m.rooms[room]
	if set == nil {
		set = make(map[string]struct{}, 1)
		m.rooms[room] = set
	}
	set[server] = struct{}{}
}

func (m *Memory) unindex(room, server string) {
	set := m.rooms[room]
	delete(set, server)
	if len(set) == 0 {
		delete(m.rooms, room)
	}
}

// dropServer forgets st. srvMu must be held.
func (m *Memory) dropServer(name string, st *serverState) {
	for r := range st.rooms {
		m.unindex(r, name)
	}
	for r := range st.marks {
		m.unindex(r, name)
	}
	delete(m.servers, name)
}

// sweepServers forgets expired servers. srvMu must be held.
func (m *Memory) sweepServers(now time.Time) {
	n := 0
	for name, st := range m.servers {
		if !now.Before(st.expires) {
			m.dropServer(name, st)
			n++
		}
	}
	if n > 0 {
		memExpired.WithLabelValues("server").Add(float64(n))
	}
}

// RoomServers returns the live servers with members in room, sorted.
func (m *Memory) RoomServers(_ context.Context, room string) ([]string, error) {
	now := m.now()
	m.srvMu.RLock()
	defer m.srvMu.RUnlock()
	set := m.rooms[room]
	if len(set) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(set))
	for name := range set {
		if st := m.servers[name]; st != nil && now.Before(st.expires) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// RoomCounts returns the online count of each room summed over the live
// servers' last reports (AddRoom marks carry no count).
func (m *Memory) RoomCounts(_ context.Context) (map[string]int32, error) {
	now := m.now()
	m.srvMu.RLock()
	defer m.srvMu.RUnlock()
	out := make(map[string]int32, len(m.rooms))
	for _, st := range m.servers {
		if !now.Before(st.expires) {
			continue
		}
		for r, n := range st.rooms {
			out[r] += n
		}
	}
	return out, nil
}

// Servers returns the servers that reported within ServerTTL, sorted by name.
func (m *Memory) Servers(_ context.Context) ([]ServerInfo, error) {
	now := m.now()
	m.srvMu.RLock()
	defer m.srvMu.RUnlock()
	out := make([]ServerInfo, 0, len(m.servers))
	for _, st := range m.servers {
		if st.reported && now.Before(st.expires) {
			out = append(out, st.info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

package session

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestMemory() (*Memory, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	return NewMemory(MemoryConfig{Shards: 4, SessionTTL: time.Minute, ServerTTL: 30 * time.Second, Now: clk.Now}), clk
}

func TestMemorySessionExpiry(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory()
	alive := Session{UserID: 1, Key: "alive", Server: "c1"}
	dead := Session{UserID: 1, Key: "dead", Server: "c1"}
	for _, s := range []Session{alive, dead} {
		if err := m.Add(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		advance   time.Duration
		touch     bool
		wantKeys  []string
		wantAlive bool
	}{
		{40 * time.Second, true, []string{"alive", "dead"}, true}, // both within TTL
		{40 * time.Second, true, []string{"alive"}, true},         // dead not touched for 80s
		{59 * time.Second, false, []string{"alive"}, true},        // alive touched 59s ago
		{time.Second, false, nil, false},                          // alive now 60s old
	}
	for i, st := range steps {
		clk.Add(st.advance)
		if st.touch {
			if err := m.Touch(ctx, alive); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := m.UserSessions(ctx, []int64{1})
		var keys []string
		for _, s := range got[1] {
			keys = append(keys, s.Key)
		}
		if !reflect.DeepEqual(keys, st.wantKeys) {
			t.Fatalf("step %d: keys %v, want %v", i, keys, st.wantKeys)
		}
		_, _, ok, _ := m.KeyOwner(ctx, "alive")
		if ok != st.wantAlive {
			t.Fatalf("step %d: KeyOwner(alive) ok=%v", i, ok)
		}
		ks, _ := m.KeyServers(ctx, []string{"dead"})
		if len(ks) != 0 && i > 0 {
			t.Fatalf("step %d: expired key in KeyServers", i)
		}
	}
	// Removing an expired session reports false.
	if ok, _ := m.Remove(ctx, 1, "alive", "c1", ""); ok {
		t.Fatal("Remove of an expired session reported true")
	}
}

func TestMemorySweepReclaims(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory()
	for uid := range int64(100) {
		if err := m.Add(ctx, Session{UserID: uid, Key: "k" + strconv.FormatInt(uid, 10), Server: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(2 * time.Minute)
	// Writes to every shard trigger each shard's sweep.
	for uid := range int64(100) {
		if err := m.Add(ctx, Session{UserID: 1000 + uid, Key: "fresh" + strconv.FormatInt(uid, 10), Server: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	users, keys := 0, 0
	for i := range m.users {
		m.users[i].mu.RLock()
		users += len(m.users[i].m)
		m.users[i].mu.RUnlock()
		m.keys[i].mu.RLock()
		keys += len(m.keys[i].m)
		m.keys[i].mu.RUnlock()
	}
	if users != 100 || keys != 100 {
		t.Fatalf("after sweep: %d users, %d keys; want only the 100 fresh ones", users, keys)
	}
}

func TestMemoryTouchRevivesExpired(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory()
	old := Session{UserID: 1, Key: "k", Server: "c1"}
	if err := m.Add(ctx, old); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute)
	// The key's session expired: a Touch from another server takes it.
	moved := Session{UserID: 1, Key: "k", Server: "c2"}
	if err := m.Touch(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if _, srv, ok, _ := m.KeyOwner(ctx, "k"); !ok || srv != "c2" {
		t.Fatalf("KeyOwner = %q %v, want c2", srv, ok)
	}
}

func TestMemoryServerExpiry(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory()
	if err := m.SetServer(ctx, ServerInfo{Name: "a"}, map[string]int32{"r": 2}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetServer(ctx, ServerInfo{Name: "b"}, map[string]int32{"r": 3}); err != nil {
		t.Fatal(err)
	}
	if err := m.AddRoom(ctx, "c", "r"); err != nil { // never reports
		t.Fatal(err)
	}
	clk.Add(20 * time.Second)
	if err := m.SetServer(ctx, ServerInfo{Name: "b"}, map[string]int32{"r": 3}); err != nil {
		t.Fatal(err)
	}
	rs, _ := m.RoomServers(ctx, "r")
	if !reflect.DeepEqual(rs, []string{"a", "b", "c"}) {
		t.Fatalf("RoomServers = %v", rs)
	}
	clk.Add(15 * time.Second) // a and c are 35s old, b 15s
	rs, _ = m.RoomServers(ctx, "r")
	if !reflect.DeepEqual(rs, []string{"b"}) {
		t.Fatalf("RoomServers after a's expiry = %v, want [b]", rs)
	}
	counts, _ := m.RoomCounts(ctx)
	if counts["r"] != 3 {
		t.Fatalf("RoomCounts = %v, want r:3", counts)
	}
	ss, _ := m.Servers(ctx)
	if len(ss) != 1 || ss[0].Name != "b" || !ss[0].UpdatedAt.Equal(clk.Now().Add(-15*time.Second)) {
		t.Fatalf("Servers = %+v", ss)
	}
	// The next report sweeps the dead servers out of memory.
	if err := m.SetServer(ctx, ServerInfo{Name: "b"}, map[string]int32{"r": 3}); err != nil {
		t.Fatal(err)
	}
	m.srvMu.RLock()
	n, idx := len(m.servers), len(m.rooms["r"])
	m.srvMu.RUnlock()
	if n != 1 || idx != 1 {
		t.Fatalf("after sweep: %d servers, room index %d; want 1, 1", n, idx)
	}
	// A dead server that marks a room comes back fresh.
	clk.Add(time.Minute)
	if err := m.AddRoom(ctx, "a", "x"); err != nil {
		t.Fatal(err)
	}
	rs, _ = m.RoomServers(ctx, "x")
	if !reflect.DeepEqual(rs, []string{"a"}) {
		t.Fatalf("RoomServers(x) = %v", rs)
	}
	if rs, _ = m.RoomServers(ctx, "r"); len(rs) != 0 {
		t.Fatalf("RoomServers(r) = %v after everyone expired", rs)
	}
}

func TestMemoryDefaults(t *testing.T) {
	m := NewMemory(MemoryConfig{})
	d := DefaultMemoryConfig()
	if m.cfg.Shards != d.Shards || m.cfg.SessionTTL != d.SessionTTL || m.cfg.ServerTTL != d.ServerTTL || m.now == nil {
		t.Fatalf("defaults not applied: %+v", m.cfg)
	}
}

func BenchmarkMemoryRoomServers(b *testing.B) {
	ctx := context.Background()
	m := NewMemory(MemoryConfig{})
	rooms := map[string]int32{}
	for i := range 1000 {
		rooms["room"+strconv.Itoa(i)] = 10
	}
	for _, s := range []string{"c1", "c2", "c3", "c4"} {
		if err := m.SetServer(ctx, ServerInfo{Name: s}, rooms); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if rs, _ := m.RoomServers(ctx, "room0"); len(rs) != 4 {
			b.Fatal(rs)
		}
	}
}

func BenchmarkMemoryTouch(b *testing.B) {
	ctx := context.Background()
	m := NewMemory(MemoryConfig{})
	s := Session{UserID: 42, Key: "k", Server: "c"}
	if err := m.Add(ctx, s); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := m.Touch(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestMemoryExpiredKeyOfAnotherUser: a key whose owner's session expired is
// free for another user, and sweeping the expired session leaves the new
// owner's key index alone.
func TestMemoryExpiredKeyOfAnotherUser(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory()
	if err := m.Add(ctx, Session{UserID: 1, Key: "k", Server: "c1", ConnID: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(ctx, Session{UserID: 2, Key: "k", Server: "c1", ConnID: "b"}); !errors.Is(err, ErrKeyInUse) {
		t.Fatalf("Add of a live key of another user: %v", err)
	}
	clk.Add(2 * time.Minute)
	if err := m.Add(ctx, Session{UserID: 2, Key: "k", Server: "c2", ConnID: "b"}); err != nil {
		t.Fatalf("Add of an expired key of another user: %v", err)
	}
	// User 1's next write sweeps its expired entry.
	clk.Add(2 * time.Minute)
	if err := m.Touch(ctx, Session{UserID: 2, Key: "k", Server: "c2", ConnID: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(ctx, Session{UserID: 1, Key: "other", Server: "c1"}); err != nil {
		t.Fatal(err)
	}
	if uid, srv, ok, _ := m.KeyOwner(ctx, "k"); !ok || uid != 2 || srv != "c2" {
		t.Fatalf("KeyOwner(k) = %d %q %v, want user 2 on c2", uid, srv, ok)
	}
}

// TestMemoryMarkSlack: a mark made up to markSlack before the report's
// TakenAt (a comet clock running ahead) survives; an older one does not.
func TestMemoryMarkSlack(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory()
	if err := m.AddRoom(ctx, "c1", "r"); err != nil {
		t.Fatal(err)
	}
	markAt := clk.Now()
	clk.Add(100 * time.Millisecond)
	if err := m.SetServer(ctx, ServerInfo{Name: "c1", TakenAt: markAt.Add(markSlack / 2)}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.RoomServers(ctx, "r"); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("mark within the slack dropped: %v", got)
	}
	if err := m.SetServer(ctx, ServerInfo{Name: "c1", TakenAt: markAt.Add(2 * markSlack)}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.RoomServers(ctx, "r"); len(got) != 0 {
		t.Fatalf("mark older than the snapshot kept: %v", got)
	}
}

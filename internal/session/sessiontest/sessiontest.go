// Package sessiontest is the conformance suite every session.Registry
// implementation runs: the in-memory registry in its own tests, Redis where
// a server is reachable. Expiry is not covered here (it needs a clock the
// suite does not control); implementations test it themselves.
package sessiontest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/session"
)

var seq atomic.Int64

// ids returns a namespace unique to this run, so that a shared backend needs
// no cleanup between tests: user ids and names built from it do not collide.
func ids() (base int64, prefix string) {
	n := seq.Add(1)
	return n * 1_000_000, fmt.Sprintf("st%d-", n)
}

// Run runs the conformance suite. newReg returns a fresh, empty registry
// (for a shared backend: one whose rooms and servers the suite's unique
// names do not collide with).
func Run(t *testing.T, newReg func(t *testing.T) session.Registry) {
	tests := []struct {
		name string
		fn   func(t *testing.T, r session.Registry)
	}{
		{"AddAndLookup", testAddLookup},
		{"AddReplaces", testAddReplaces},
		{"Remove", testRemove},
		{"RemoveOtherConn", testRemoveOtherConn},
		{"KeyOfAnotherUser", testKeyOfAnotherUser},
		{"Touch", testTouch},
		{"Validation", testValidation},
		{"Servers", testServers},
		{"Rooms", testRooms},
		{"AddRoomBeforeReport", testAddRoomBeforeReport},
		{"MarkDuringReport", testMarkDuringReport},
		{"Concurrent", testConcurrent},
		{"ManyUsers", testManyUsers},
		{"KeyRace", testKeyRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newReg(t)) })
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testAddLookup(t *testing.T, r session.Registry) {
	ctx := t.Context()
	base, p := ids()
	u1, u2, u3 := base+1, base+2, base+3
	sessions := []session.Session{
		{UserID: u1, Key: p + "k1b", Server: p + "c1", Platform: "ios"},
		{UserID: u1, Key: p + "k1a", Server: p + "c2", Platform: "web"},
		{UserID: u2, Key: p + "k2", Server: p + "c1", Platform: "android"},
	}
	for _, s := range sessions {
		must(t, r.Add(ctx, s))
	}
	got, err := r.UserSessions(ctx, []int64{u1, u2, u3})
	must(t, err)
	want := map[int64][]session.Session{
		u1: {sessions[1], sessions[0]}, // sorted by key
		u2: {sessions[2]},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UserSessions = %+v, want %+v", got, want)
	}
	empty, err := r.UserSessions(ctx, nil)
	must(t, err)
	if empty == nil || len(empty) != 0 {
		t.Fatalf("UserSessions(nil) = %#v, want an empty map", empty)
	}

	owners := []struct {
		key    string
		user   int64
		server string
		ok     bool
	}{
		{p + "k1a", u1, p + "c2", true},
		{p + "k1b", u1, p + "c1", true},
		{p + "k2", u2, p + "c1", true},
		{p + "none", 0, "", false},
	}
	for _, o := range owners {
		uid, srv, ok, err := r.KeyOwner(ctx, o.key)
		must(t, err)
		if ok != o.ok || (ok && (uid != o.user || srv != o.server)) {
			t.Errorf("KeyOwner(%q) = %d, %q, %v; want %d, %q, %v", o.key, uid, srv, ok, o.user, o.server, o.ok)
		}
	}
	ks, err := r.KeyServers(ctx, []string{p + "k1a", p + "k2", p + "none"})
	must(t, err)
	if want := map[string]string{p + "k1a": p + "c2", p + "k2": p + "c1"}; !reflect.DeepEqual(ks, want) {
		t.Fatalf("KeyServers = %v, want %v", ks, want)
	}
}

func testAddReplaces(t *testing.T, r session.Registry) {
	ctx := t.Context()
	base, p := ids()
	u := base + 1
	must(t, r.Add(ctx, session.Session{UserID: u, Key: p + "k", Server: p + "c1", Platform: "ios"}))
	s2 := session.Session{UserID: u, Key: p + "k", Server: p + "c2", Platform: "ios"}
	must(t, r.Add(ctx, s2))
	got, err := r.UserSessions(ctx, []int64{u})
	must(t, err)
	if !reflect.DeepEqual(got[u], []session.Session{s2}) {
		t.Fatalf("after re-Add: %+v, want only %+v", got[u], s2)
	}
	_, srv, ok, err := r.KeyOwner(ctx, p+"k")
	must(t, err)
	if !ok || srv != p+"c2" {
		t.Fatalf("KeyOwner after re-Add: %q %v", srv, ok)
	}
	// Removing the replaced session's server is a no-op.
	removed, err := r.Remove(ctx, u, p+"k", p+"c1", "")
	must(t, err)
	if removed {
		t.Fatal("Remove with the old server removed the new session")
	}
}

func testRemove(t *testing.T, r session.Registry) {
	ctx := t.Context()
	base, p := ids()
	u := base + 1
	keep := session.Session{UserID: u, Key: p + "keep", Server: p + "c1", ConnID: p + "c1#1"}
	gone := session.Session{UserID: u, Key: p + "gone", Server: p + "c1", ConnID: p + "c1#2"}
	must(t, r.Add(ctx, keep))
	must(t, r.Add(ctx, gone))
	steps := []struct {
		name                string
		uid                 int64
		key, server, connID string
		want                bool
	}{
		{"wrong server", u, gone.Key, p + "other", gone.ConnID, false},
		{"wrong user", u + 1, gone.Key, gone.Server, gone.ConnID, false},
		{"wrong conn", u, gone.Key, gone.Server, keep.ConnID, false},
		{"no conn", u, gone.Key, gone.Server, "", false},
		{"match", u, gone.Key, gone.Server, gone.ConnID, true},
		{"again", u, gone.Key, gone.Server, gone.ConnID, false},
		{"unknown key", u, p + "none", gone.Server, gone.ConnID, false},
	}
	for _, s := range steps {
		ok, err := r.Remove(ctx, s.uid, s.key, s.server, s.connID)
		must(t, err)
		if ok != s.want {
			t.Fatalf("Remove %s = %v, want %v", s.name, ok, s.want)
		}
	}
	got, err := r.UserSessions(ctx, []int64{u})
	must(t, err)
	if !reflect.DeepEqual(got[u], []session.Session{keep}) {
		t.Fatalf("after Remove: %+v", got[u])
	}
	if _, _, ok, _ := r.KeyOwner(ctx, gone.Key); ok {
		t.Fatal("KeyOwner finds a removed key")
	}
	ks, err := r.KeyServers(ctx, []string{gone.Key, keep.Key})
	must(t, err)
	if want := map[string]string{keep.Key: keep.Server}; !reflect.DeepEqual(ks, want) {
		t.Fatalf("KeyServers after Remove = %v, want %v", ks, want)
	}
	// Removing the last session removes the user.
	ok, err := r.Remove(ctx, u, keep.Key, keep.Server, keep.ConnID)
	must(t, err)
	if !ok {
		t.Fatal("Remove of the last session failed")
	}
	got, err = r.UserSessions(ctx, []int64{u})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("user without sessions present: %+v", got)
	}
}

// testRemoveOtherConn: a connection that closes after a newer connection of
// the same device (same user, key and server) took over must not remove the
// newer one's session, nor keep it alive with its heartbeats.
func testRemoveOtherConn(t *testing.T, r session.Registry) {
	ctx := t.Context()
	base, p := ids()
	u := base + 1
	old := session.Session{UserID: u, Key: p + "k", Server: p + "c1", ConnID: p + "c1#1"}
	cur := session.Session{UserID: u, Key: p + "k", Server: p + "c1", ConnID: p + "c1#2"}
	must(t, r.Add(ctx, old))
	must(t, r.Add(ctx, cur))
	must(t, r.Touch(ctx, old)) // the old connection's last heartbeat
	removed, err := r.Remove(ctx, u, old.Key, old.Server, old.ConnID)
	must(t, err)
	if removed {
		t.Fatal("Remove of the old connection removed the newer connection's session")
	}
	got, err := r.UserSessions(ctx, []int64{u})
	must(t, err)
	if !reflect.DeepEqual(got[u], []session.Session{cur}) {
		t.Fatalf("sessions = %+v, want only %+v", got[u], cur)
	}
	removed, err = r.Remove(ctx, u, cur.Key, cur.Server, cur.ConnID)
	must(t, err)
	if !removed {
		t.Fatal("Remove of the current connection failed")
	}
}

// testKeyOfAnotherUser: a key belongs to one user at a time; Add of another
// user's live key fails and Touch leaves it alone.
func testKeyOfAnotherUser(t *testing.T, r session.Registry) {
	ctx := t.Context()
	base, p := ids()
	owner := session.Session{UserID: base + 1, Key: p + "k", Server: p + "c1", ConnID: "1"}
	thief := session.Session{UserID: base + 2, Key: p + "k", Server: p + "c2", ConnID: "2"}
	must(t, r.Add(ctx, owner))
	if err := r.Add(ctx, thief); !errors.Is(err, session.ErrKeyInUse) {
		t.Fatalf("Add of another user's key: %v, want ErrKeyInUse", err)
	}
	must(t, r.Touch(ctx, thief))
	uid, srv, ok, err := r.KeyOwner(ctx, owner.Key)
	must(t, err)
	if !ok || uid != owner.UserID || srv != owner.Server {
		t.Fatalf("KeyOwner = %d %q %v, want the first user's", uid, srv, ok)
	}
	ks, err := r.KeyServers(ctx, []string{owner.Key})
	must(t, err)
	if ks[owner.Key] != owner.Server {
		t.Fatalf("KeyServers = %v", ks)
	}
	got, err := r.UserSessions(ctx, []int64{thief.UserID})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("the refused user has sessions: %+v", got)
	}
	// Once the owner is gone the key is free.
	removed, err := r.Remove(ctx, owner.UserID, owner.Key, owner.Server, owner.ConnID)
	must(t, err)
	if !removed {
		t.Fatal("Remove of the owner failed")
	}
	must(t, r.Add(ctx, thief))
}

func testTouch(t *testing.T, r session.Registry) {
	ctx := t.Context()
	base, p := ids()
	u := base + 1
	s := session.Session{UserID: u, Key: p + "k", Server: p + "c1", Platform: "pc", ConnID: "1"}
	must(t, r.Add(ctx, s))
	must(t, r.Touch(ctx, s))
	got, err := r.UserSessions(ctx, []int64{u})
	must(t, err)
	if !reflect.DeepEqual(got[u], []session.Session{s}) {
		t.Fatalf("after Touch: %+v", got[u])
	}
	// Touch of an unknown session adds it (rebuild after a registry loss).
	s2 := session.Session{UserID: u, Key: p + "k2", Server: p + "c2", Platform: "web"}
	must(t, r.Touch(ctx, s2))
	_, srv, ok, err := r.KeyOwner(ctx, s2.Key)
	must(t, err)
	if !ok || srv != s2.Server {
		t.Fatalf("Touch did not add an unknown session: %q %v", srv, ok)
	}
	// Touch from a server the key has moved away from changes nothing.
	moved := session.Session{UserID: u, Key: p + "k", Server: p + "c3", Platform: "pc", ConnID: "3"}
	must(t, r.Add(ctx, moved))
	must(t, r.Touch(ctx, s))
	_, srv, ok, err = r.KeyOwner(ctx, s.Key)
	must(t, err)
	if !ok || srv != moved.Server {
		t.Fatalf("stale Touch stole the key: server %q, want %q", srv, moved.Server)
	}
}

func testValidation(t *testing.T, r session.Registry) {
	ctx := t.Context()
	_, p := ids()
	errs := []struct {
		name string
		err  error
	}{
		{"Add without key", r.Add(ctx, session.Session{UserID: 1, Server: p + "c"})},
		{"Add without server", r.Add(ctx, session.Session{UserID: 1, Key: p + "k"})},
		{"Touch without key", r.Touch(ctx, session.Session{UserID: 1, Server: p + "c"})},
		{"SetServer without name", r.SetServer(ctx, session.ServerInfo{}, nil)},
		{"AddRoom without room", r.AddRoom(ctx, p+"c", "")},
		{"AddRoom without server", r.AddRoom(ctx, "", p+"room")},
	}
	for _, e := range errs {
		if e.err == nil {
			t.Errorf("%s: no error", e.name)
		}
	}
}

func findServer(ss []session.ServerInfo, name string) (session.ServerInfo, bool) {
	for _, s := range ss {
		if s.Name == name {
			return s, true
		}
	}
	return session.ServerInfo{}, false
}

func testServers(t *testing.T, r session.Registry) {
	ctx := t.Context()
	_, p := ids()
	a := session.ServerInfo{Name: p + "a", TCPAddr: "10.0.0.1:3101", WSAddr: "10.0.0.1:3102", Conns: 10, IPs: 7}
	b := session.ServerInfo{Name: p + "b", TCPAddr: "10.0.0.2:3101", Conns: 3, IPs: 3}
	must(t, r.SetServer(ctx, a, nil))
	must(t, r.SetServer(ctx, b, map[string]int32{p + "r": 1}))
	a.Conns = 11
	must(t, r.SetServer(ctx, a, nil)) // a new report replaces the old
	ss, err := r.Servers(ctx)
	must(t, err)
	for _, want := range []session.ServerInfo{a, b} {
		got, ok := findServer(ss, want.Name)
		if !ok {
			t.Fatalf("server %s missing from %+v", want.Name, ss)
		}
		if got.UpdatedAt.IsZero() {
			t.Errorf("server %s: zero UpdatedAt", want.Name)
		}
		got.UpdatedAt = want.UpdatedAt
		if got != want {
			t.Errorf("server = %+v, want %+v", got, want)
		}
	}
	// A server only known through AddRoom is not listed.
	must(t, r.AddRoom(ctx, p+"unreported", p+"r"))
	ss, err = r.Servers(ctx)
	must(t, err)
	if _, ok := findServer(ss, p+"unreported"); ok {
		t.Fatal("Servers lists a server that never reported")
	}
}

func roomServers(t *testing.T, r session.Registry, room string) []string {
	t.Helper()
	s, err := r.RoomServers(t.Context(), room)
	must(t, err)
	if len(s) == 0 {
		return nil
	}
	return s
}

func testRooms(t *testing.T, r session.Registry) {
	ctx := t.Context()
	_, p := ids()
	a, b := p+"a", p+"b"
	r1, r2, r3 := p+"r1", p+"r2", p+"r3"
	must(t, r.SetServer(ctx, session.ServerInfo{Name: a}, map[string]int32{r1: 3, r2: 1}))
	must(t, r.SetServer(ctx, session.ServerInfo{Name: b}, map[string]int32{r1: 2}))

	check := func(step string, want map[string][]string, counts map[string]int32) {
		t.Helper()
		for room, servers := range want {
			if got := roomServers(t, r, room); !equalSet(got, servers) {
				t.Fatalf("%s: RoomServers(%s) = %v, want %v", step, room, got, servers)
			}
		}
		all, err := r.RoomCounts(ctx)
		must(t, err)
		for room, n := range counts {
			if all[room] != n {
				t.Fatalf("%s: RoomCounts[%s] = %d, want %d", step, room, all[room], n)
			}
		}
	}
	check("reports", map[string][]string{r1: {a, b}, r2: {a}, r3: nil}, map[string]int32{r1: 5, r2: 1, r3: 0})

	must(t, r.AddRoom(ctx, b, r3)) // b's first member of r3: visible at once
	check("AddRoom", map[string][]string{r3: {b}}, nil)
	must(t, r.AddRoom(ctx, a, r1)) // already reported: no change
	check("AddRoom reported", map[string][]string{r1: {a, b}}, map[string]int32{r1: 5})

	// The next report replaces the set: a left r1, b's mark becomes a count.
	must(t, r.SetServer(ctx, session.ServerInfo{Name: a}, map[string]int32{r2: 4}))
	must(t, r.SetServer(ctx, session.ServerInfo{Name: b}, map[string]int32{r1: 2, r3: 1}))
	check("second reports", map[string][]string{r1: {b}, r2: {a}, r3: {b}}, map[string]int32{r1: 2, r2: 4, r3: 1})

	// A mark not confirmed by the next report vanishes.
	must(t, r.AddRoom(ctx, a, r3))
	check("mark", map[string][]string{r3: {a, b}}, nil)
	must(t, r.SetServer(ctx, session.ServerInfo{Name: a}, map[string]int32{r2: 4}))
	check("mark dropped", map[string][]string{r3: {b}}, map[string]int32{r3: 1})

	// An empty report empties the server's rooms.
	must(t, r.SetServer(ctx, session.ServerInfo{Name: a}, nil))
	must(t, r.SetServer(ctx, session.ServerInfo{Name: b}, map[string]int32{}))
	check("empty reports", map[string][]string{r1: nil, r2: nil, r3: nil}, map[string]int32{r1: 0, r2: 0, r3: 0})
}

func testAddRoomBeforeReport(t *testing.T, r session.Registry) {
	ctx := t.Context()
	_, p := ids()
	must(t, r.AddRoom(ctx, p+"new", p+"room"))
	if got := roomServers(t, r, p+"room"); !equalSet(got, []string{p + "new"}) {
		t.Fatalf("RoomServers = %v, want the server known only by AddRoom", got)
	}
	must(t, r.SetServer(ctx, session.ServerInfo{Name: p + "new"}, map[string]int32{p + "room": 1}))
	if got := roomServers(t, r, p+"room"); !equalSet(got, []string{p + "new"}) {
		t.Fatalf("RoomServers after report = %v", got)
	}
}

// testMarkDuringReport: a room joined (AddRoom) after the comet took its
// report's snapshot but before the report arrives survives the report; a
// mark older than the snapshot does not.
func testMarkDuringReport(t *testing.T, r session.Registry) {
	ctx := t.Context()
	_, p := ids()
	srv := p + "c"
	must(t, r.SetServer(ctx, session.ServerInfo{Name: srv}, nil))
	must(t, r.AddRoom(ctx, srv, p+"joined"))
	// The snapshot was taken well before the join (an hour covers any clock).
	taken := time.Now().Add(-time.Hour)
	must(t, r.SetServer(ctx, session.ServerInfo{Name: srv, TakenAt: taken}, map[string]int32{p + "other": 1}))
	if got := roomServers(t, r, p+"joined"); !equalSet(got, []string{srv}) {
		t.Fatalf("RoomServers(joined) after an older report = %v, want [%s]", got, srv)
	}
	// A report whose snapshot is later than the join decides.
	must(t, r.SetServer(ctx, session.ServerInfo{Name: srv, TakenAt: time.Now().Add(time.Hour)}, map[string]int32{p + "other": 1}))
	if got := roomServers(t, r, p+"joined"); len(got) != 0 {
		t.Fatalf("RoomServers(joined) after a newer report without it = %v, want none", got)
	}
	// A room of the last report that empties and fills again between two
	// snapshots is marked again.
	must(t, r.AddRoom(ctx, srv, p+"other"))
	must(t, r.SetServer(ctx, session.ServerInfo{Name: srv, TakenAt: taken}, nil))
	if got := roomServers(t, r, p+"other"); !equalSet(got, []string{srv}) {
		t.Fatalf("RoomServers(other) = %v, want [%s]", got, srv)
	}
}

func equalSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]int, len(a))
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		if m[s] == 0 {
			return false
		}
		m[s]--
	}
	return true
}

func testConcurrent(t *testing.T, r session.Registry) {
	ctx := context.Background()
	base, p := ids()
	const workers, users = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range users {
				uid := base + int64(i)
				s := session.Session{UserID: uid, Key: fmt.Sprintf("%sk%d-%d", p, i, w), Server: fmt.Sprintf("%sc%d", p, w%3), ConnID: strconv.Itoa(w)}
				if err := r.Add(ctx, s); err != nil {
					t.Error(err)
					return
				}
				if err := r.Touch(ctx, s); err != nil {
					t.Error(err)
					return
				}
				if w%2 == 1 { // odd workers remove what they added
					if ok, err := r.Remove(ctx, uid, s.Key, s.Server, s.ConnID); err != nil || !ok {
						t.Errorf("Remove: %v %v", ok, err)
						return
					}
				}
				if _, err := r.UserSessions(ctx, []int64{uid}); err != nil {
					t.Error(err)
					return
				}
				room := fmt.Sprintf("%sroom%d", p, i%5)
				if err := r.AddRoom(ctx, s.Server, room); err != nil {
					t.Error(err)
					return
				}
				if _, err := r.RoomServers(ctx, room); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	all := make([]int64, users)
	for i := range all {
		all[i] = base + int64(i)
	}
	got, err := r.UserSessions(ctx, all)
	must(t, err)
	for i := range users {
		uid := base + int64(i)
		if len(got[uid]) != workers/2 {
			t.Fatalf("user %d has %d sessions, want %d", uid, len(got[uid]), workers/2)
		}
		for _, s := range got[uid] {
			owner, srv, ok, err := r.KeyOwner(ctx, s.Key)
			must(t, err)
			if !ok || owner != uid || srv != s.Server {
				t.Fatalf("KeyOwner(%s) = %d %s %v, inconsistent with UserSessions", s.Key, owner, srv, ok)
			}
		}
	}
}

// testManyUsers: UserSessions and KeyServers of many users and keys at once
// (a batched backend), with duplicates and unknown ids.
func testManyUsers(t *testing.T, r session.Registry) {
	ctx := t.Context()
	base, p := ids()
	const n = 300
	want := make(map[int64][]session.Session, n)
	wantKeys := make(map[string]string, n)
	var uids []int64
	var keys []string
	for i := range n {
		uid := base + int64(i)
		s := session.Session{UserID: uid, Key: fmt.Sprintf("%sk%d", p, i), Server: fmt.Sprintf("%sc%d", p, i%4), Platform: "web", ConnID: strconv.Itoa(i)}
		must(t, r.Add(ctx, s))
		want[uid] = []session.Session{s}
		wantKeys[s.Key] = s.Server
		uids = append(uids, uid, uid, base+n+int64(i)) // a duplicate and an unknown user
		keys = append(keys, s.Key, p+"none"+strconv.Itoa(i))
	}
	got, err := r.UserSessions(ctx, uids)
	must(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UserSessions of %d users: %d users returned, want %d", n, len(got), len(want))
	}
	ks, err := r.KeyServers(ctx, keys)
	must(t, err)
	if !reflect.DeepEqual(ks, wantKeys) {
		t.Fatalf("KeyServers of %d keys: %d returned, want %d", len(keys), len(ks), len(wantKeys))
	}
}

// testKeyRace: users racing to Add one key: exactly one wins, and the
// registry's views agree on the winner.
func testKeyRace(t *testing.T, r session.Registry) {
	ctx := context.Background()
	base, p := ids()
	const racers = 8
	for round := range 5 {
		key := fmt.Sprintf("%sk%d", p, round)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = r.Add(ctx, session.Session{UserID: base + int64(i), Key: key, Server: p + "c", ConnID: strconv.Itoa(i)})
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: racers %d and %d both got the key", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, session.ErrKeyInUse):
				t.Fatalf("round %d: racer %d: %v", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody got the key", round)
		}
		uid, _, ok, err := r.KeyOwner(ctx, key)
		must(t, err)
		if !ok || uid != base+int64(winner) {
			t.Fatalf("round %d: KeyOwner = %d %v, want racer %d", round, uid, ok, winner)
		}
		all := make([]int64, racers)
		for i := range all {
			all[i] = base + int64(i)
		}
		got, err := r.UserSessions(ctx, all)
		must(t, err)
		if len(got) != 1 || len(got[base+int64(winner)]) != 1 {
			t.Fatalf("round %d: sessions %+v, want only racer %d's", round, got, winner)
		}
		for i := range racers { // tidy up (each round has a key of its own)
			_, _ = r.Remove(ctx, base+int64(i), key, p+"c", strconv.Itoa(i))
		}
	}
}

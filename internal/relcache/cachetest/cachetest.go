// Package cachetest is the conformance suite of relcache backends: the
// lease protocol of the Backend interface itself, and a relcache.Cache on
// the backend against a counting fake Source (hits do no Source call,
// negative results are cached, invalidation forces a reload, a fill that
// read the store before an invalidation does not leave a stale entry). The
// in-process backend runs it always, Redis where a server is reachable.
// Expiry is not covered (it needs a clock the suite does not control);
// backends test it themselves.
package cachetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/store"
)

var seq atomic.Int64

// ids returns a base id unique to this run, so that tests sharing a backend
// never touch each other's keys.
func ids() int64 { return seq.Add(1) * 1_000_000 }

// Run runs the suite. newBackend returns a backend with no entries for the
// ids the suite uses (for a shared server: a fresh key prefix).
func Run(t *testing.T, newBackend func(t *testing.T) relcache.Backend) {
	backendTests := []struct {
		name string
		fn   func(t *testing.T, b relcache.Backend)
	}{
		{"LeaseProtocol", testLeaseProtocol},
		{"DeleteKillsLease", testDeleteKillsLease},
		{"DeleteValues", testDeleteValues},
		{"ForcedLease", testForcedLease},
		{"Release", testRelease},
		{"Get2Leases", testGet2Leases},
		{"ValueRoundTrip", testValueRoundTrip},
		{"KeysDistinct", testKeysDistinct},
	}
	for _, tc := range backendTests {
		t.Run("Backend/"+tc.name, func(t *testing.T) { tc.fn(t, newBackend(t)) })
	}
	cacheTests := []struct {
		name string
		fn   func(t *testing.T, c *relcache.Cache, src *Source)
	}{
		{"HitDoesNoSourceCall", testHitNoSource},
		{"InvalidateFriend", testInvalidateFriend},
		{"InvalidateBlock", testInvalidateBlock},
		{"MembershipFields", testMembershipFields},
		{"InvalidateMember", testInvalidateMember},
		{"InvalidateGroup", testInvalidateGroup},
		{"UnknownGroup", testUnknownGroup},
		{"SourceErrorNotCached", testSourceError},
		{"RaceRule", testRace},
		{"ConcurrentMisses", testConcurrentMisses},
		{"ConcurrentInvalidation", testConcurrentInvalidation},
		{"Stats", testStats},
	}
	for _, tc := range cacheTests {
		t.Run("Cache/"+tc.name, func(t *testing.T) {
			src := NewSource()
			c := relcache.New(newBackend(t), src, relcache.Config{Logger: slog.New(slog.DiscardHandler)})
			tc.fn(t, c, src)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, b relcache.Backend, k relcache.Key) relcache.Result {
	t.Helper()
	r, err := b.Get(t.Context(), k)
	must(t, err)
	return r
}

// fill stores v at k through the lease protocol.
func fill(t *testing.T, b relcache.Backend, k relcache.Key, v relcache.Value) {
	t.Helper()
	r := get(t, b, k)
	if r.Lease == 0 {
		t.Fatalf("fill %v: no lease (hit %v)", k, r.Hit)
	}
	must(t, b.Set(t.Context(), relcache.Item{Key: k, Lease: r.Lease, Value: v, TTL: time.Minute}))
	if r := get(t, b, k); !r.Hit || r.Value != v {
		t.Fatalf("fill %v: Get = %+v, want hit %+v", k, r, v)
	}
}

func testLeaseProtocol(t *testing.T, b relcache.Backend) {
	ctx := t.Context()
	base := ids()
	k := relcache.FriendKey(base+1, base+2)
	v := relcache.Value{Found: true}

	r := get(t, b, k)
	if r.Hit || r.Lease == 0 {
		t.Fatalf("first Get = %+v, want a lease", r)
	}
	if r2 := get(t, b, k); r2.Hit || r2.Lease != 0 {
		t.Fatalf("second Get = %+v, want busy (no hit, no lease)", r2)
	}
	must(t, b.Set(ctx, relcache.Item{Key: k, Lease: r.Lease + 1, Value: v, TTL: time.Minute}))
	if r2 := get(t, b, k); r2.Hit {
		t.Fatalf("Set with a wrong lease stored a value: %+v", r2)
	}
	must(t, b.Set(ctx, relcache.Item{Key: k, Lease: r.Lease, Value: v, TTL: time.Minute}))
	if r2 := get(t, b, k); !r2.Hit || r2.Value != v || r2.Lease != 0 {
		t.Fatalf("Get after Set = %+v, want hit %+v", r2, v)
	}
	// The lease is used up: a second Set with it changes nothing.
	must(t, b.Set(ctx, relcache.Item{Key: k, Lease: r.Lease, Value: relcache.Value{}, TTL: time.Minute}))
	if r2 := get(t, b, k); !r2.Hit || r2.Value != v {
		t.Fatalf("Set with a used lease changed the value: %+v", r2)
	}
	// A zero lease is never accepted.
	k2 := relcache.FriendKey(base+3, base+4)
	must(t, b.Set(ctx, relcache.Item{Key: k2, Lease: 0, Value: v, TTL: time.Minute}))
	if r2 := get(t, b, k2); r2.Hit {
		t.Fatalf("Set with lease 0 stored a value: %+v", r2)
	}
}

func testDeleteKillsLease(t *testing.T, b relcache.Backend) {
	ctx := t.Context()
	base := ids()
	k := relcache.BlockKey(base+1, base+2)
	r := get(t, b, k)
	if r.Lease == 0 {
		t.Fatalf("Get = %+v, want a lease", r)
	}
	must(t, b.Delete(ctx, k))
	must(t, b.Set(ctx, relcache.Item{Key: k, Lease: r.Lease, Value: relcache.Value{Found: true}, TTL: time.Minute}))
	r2 := get(t, b, k)
	if r2.Hit {
		t.Fatalf("Set after Delete stored a value: %+v", r2)
	}
	if r2.Lease == 0 || r2.Lease == r.Lease {
		t.Fatalf("Get after Delete = %+v, want a new lease (old %d)", r2, r.Lease)
	}
}

func testDeleteValues(t *testing.T, b relcache.Backend) {
	ctx := t.Context()
	base := ids()
	keys := []relcache.Key{
		relcache.FriendKey(base+1, base+2), relcache.BlockKey(base+1, base+2),
		relcache.GroupKey(base + 1), relcache.MemberKey(base+1, base+2), relcache.MemberKey(base+2, base+1),
	}
	for i, k := range keys {
		fill(t, b, k, relcache.Value{Found: true, Gen: uint64(i + 1)})
	}
	must(t, b.Delete(ctx, keys[0]))
	if r := get(t, b, keys[0]); r.Hit || r.Lease == 0 {
		t.Fatalf("Get after Delete = %+v, want a lease", r)
	}
	if r := get(t, b, keys[1]); !r.Hit {
		t.Fatalf("Delete of one key dropped another: %+v", r)
	}
	must(t, b.Delete(ctx, keys[1:]...))
	for _, k := range keys[1:] {
		if r := get(t, b, k); r.Hit {
			t.Fatalf("%v after Delete = %+v, want no value", k, r)
		}
	}
	must(t, b.Delete(ctx)) // no keys: no-op
	must(t, b.Delete(ctx, relcache.FriendKey(base+8, base+9)))
}

func testForcedLease(t *testing.T, b relcache.Backend) {
	ctx := t.Context()
	base := ids()
	k := relcache.MemberKey(base+1, base+2)
	old := relcache.Value{Found: true, Gen: 7}
	fill(t, b, k, old)

	l, err := b.Lease(ctx, k)
	must(t, err)
	if l == 0 {
		t.Fatal("Lease over a value returned 0, want a lease")
	}
	if r := get(t, b, k); r.Hit || r.Lease != 0 {
		t.Fatalf("Get after Lease = %+v, want busy", r)
	}
	if l2, err := b.Lease(ctx, k); err != nil || l2 != 0 {
		t.Fatalf("Lease over a live lease = %d, %v; want 0", l2, err)
	}
	v := relcache.Value{Found: true, Role: store.RoleAdmin, Gen: 8}
	must(t, b.Set(ctx, relcache.Item{Key: k, Lease: l, Value: v, TTL: time.Minute}))
	if r := get(t, b, k); !r.Hit || r.Value != v {
		t.Fatalf("Get = %+v, want hit %+v", r, v)
	}
	// On an empty key, Lease behaves like a leasing Get.
	k2 := relcache.MemberKey(base+1, base+3)
	if l, err := b.Lease(ctx, k2); err != nil || l == 0 {
		t.Fatalf("Lease of an empty key = %d, %v", l, err)
	}
}

func testRelease(t *testing.T, b relcache.Backend) {
	ctx := t.Context()
	base := ids()
	k := relcache.GroupKey(base + 1)
	r := get(t, b, k)
	if r.Lease == 0 {
		t.Fatalf("Get = %+v, want a lease", r)
	}
	// A release with another lease changes nothing.
	must(t, b.Set(ctx, relcache.Item{Key: k, Lease: r.Lease + 1}))
	if r2 := get(t, b, k); r2.Hit || r2.Lease != 0 {
		t.Fatalf("Get after a wrong release = %+v, want busy", r2)
	}
	must(t, b.Set(ctx, relcache.Item{Key: k, Lease: r.Lease, TTL: 0}))
	r2 := get(t, b, k)
	if r2.Hit || r2.Lease == 0 {
		t.Fatalf("Get after the release = %+v, want a new lease", r2)
	}
	// A release never drops a value.
	must(t, b.Set(ctx, relcache.Item{Key: k, Lease: r2.Lease, Value: relcache.Value{Found: true, Gen: 1}, TTL: time.Minute}))
	must(t, b.Set(ctx, relcache.Item{Key: k, Lease: r2.Lease, TTL: -1}))
	if r3 := get(t, b, k); !r3.Hit {
		t.Fatalf("a release with a used lease dropped the value: %+v", r3)
	}
}

func testGet2Leases(t *testing.T, b relcache.Backend) {
	ctx := t.Context()
	base := ids()
	gv := relcache.Value{Found: true, Gen: 5}
	mv := relcache.Value{Found: true, Role: store.RoleOwner, MutedUntil: 1234, Gen: 5}
	type state int
	const (
		empty state = iota
		busy        // another lookup's lease
		value
	)
	tests := []struct {
		name         string
		group, membr state
	}{
		{"both empty", empty, empty},
		{"group busy", busy, empty},
		{"group value", value, empty},
		{"member busy", value, busy},
		{"both values", value, value},
		{"member value only", empty, value},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := base + int64(i)*10 + 1
			gk, mk := relcache.GroupKey(g), relcache.MemberKey(g, base+2)
			for _, x := range []struct {
				k relcache.Key
				s state
				v relcache.Value
			}{{gk, tc.group, gv}, {mk, tc.membr, mv}} {
				switch x.s {
				case busy:
					if r := get(t, b, x.k); r.Lease == 0 {
						t.Fatalf("setup: no lease on %v: %+v", x.k, r)
					}
				case value:
					fill(t, b, x.k, x.v)
				}
			}
			r1, r2, err := b.Get2(ctx, gk, mk)
			must(t, err)
			for _, x := range []struct {
				name string
				r    relcache.Result
				s    state
				v    relcache.Value
			}{{"group", r1, tc.group, gv}, {"member", r2, tc.membr, mv}} {
				switch {
				case x.s == empty && (x.r.Hit || x.r.Lease == 0):
					t.Fatalf("%s = %+v, want a lease", x.name, x.r)
				case x.s == busy && (x.r.Hit || x.r.Lease != 0):
					t.Fatalf("%s = %+v, want busy", x.name, x.r)
				case x.s == value && (!x.r.Hit || x.r.Value != x.v || x.r.Lease != 0):
					t.Fatalf("%s = %+v, want hit %+v", x.name, x.r, x.v)
				}
			}
			if tc.group == empty && tc.membr == empty && r1.Lease == r2.Lease {
				t.Fatalf("both keys got the same lease %d", r1.Lease)
			}
		})
	}
}

func testValueRoundTrip(t *testing.T, b relcache.Backend) {
	base := ids()
	values := []relcache.Value{
		{},
		{Found: true},
		{Found: true, MuteAll: true, Gen: 1},
		{Found: true, Dismissed: true, Gen: 1<<64 - 1},
		{Found: true, Role: store.RoleAdmin, MutedUntil: time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.UTC).UnixMilli(), Gen: 42},
		{Found: true, Role: store.RoleOwner, MutedUntil: 1<<63 - 1, Gen: 1 << 63},
		{Found: true, Role: store.RoleMember, MutedUntil: -62135596800000, Gen: 3},
	}
	for i, v := range values {
		fill(t, b, relcache.MemberKey(base, base+int64(i)), v)
	}
}

func testKeysDistinct(t *testing.T, b relcache.Backend) {
	base := ids()
	a, c := base+1, base+2
	keys := []relcache.Key{
		relcache.FriendKey(a, c), relcache.FriendKey(c, a),
		relcache.BlockKey(a, c), relcache.BlockKey(c, a),
		relcache.GroupKey(a), relcache.GroupKey(c),
		relcache.MemberKey(a, c), relcache.MemberKey(c, a),
		relcache.FriendKey(-a, c), relcache.MemberKey(a, -c),
	}
	for i, k := range keys {
		fill(t, b, k, relcache.Value{Found: true, Gen: uint64(i + 1)})
	}
	for i, k := range keys {
		if r := get(t, b, k); !r.Hit || r.Value.Gen != uint64(i+1) {
			t.Fatalf("%v = %+v, want its own value (gen %d)", k, r, i+1)
		}
	}
}

// sourceDelta runs fn and returns how many Source calls it made.
func sourceDelta(src *Source, fn func()) int64 {
	before := src.TotalCalls()
	fn()
	return src.TotalCalls() - before
}

func isFriend(t *testing.T, c relcache.Checker, a, b int64) bool {
	t.Helper()
	ok, err := c.IsFriend(t.Context(), a, b)
	must(t, err)
	return ok
}

func isBlocked(t *testing.T, c relcache.Checker, a, b int64) bool {
	t.Helper()
	ok, err := c.IsBlocked(t.Context(), a, b)
	must(t, err)
	return ok
}

func membership(t *testing.T, c relcache.Checker, g, u int64) relcache.Membership {
	t.Helper()
	m, err := c.Membership(t.Context(), g, u)
	must(t, err)
	return m
}

func testHitNoSource(t *testing.T, c *relcache.Cache, src *Source) {
	base := ids()
	a, b, x := base+1, base+2, base+3
	g, unknown := base+10, base+11
	src.SetFriend(a, b, true)
	src.SetBlock(a, x, true)
	src.SetGroup(store.Group{ID: g, OwnerID: a})
	src.SetMember(store.Member{GroupID: g, UserID: a, Role: store.RoleOwner})

	tests := []struct {
		name   string
		lookup func() any
		want   any
	}{
		{"friend", func() any { return isFriend(t, c, a, b) }, true},
		{"not friend", func() any { return isFriend(t, c, a, x) }, false},
		{"blocked", func() any { return isBlocked(t, c, a, x) }, true},
		{"not blocked", func() any { return isBlocked(t, c, x, a) }, false},
		{"member", func() any { return membership(t, c, g, a) },
			relcache.Membership{GroupExists: true, IsMember: true, Role: store.RoleOwner}},
		{"not member", func() any { return membership(t, c, g, b) }, relcache.Membership{GroupExists: true}},
		{"unknown group", func() any { return membership(t, c, unknown, a) }, relcache.Membership{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got any
			if n := sourceDelta(src, func() { got = tc.lookup() }); n == 0 {
				t.Fatalf("first lookup made no Source call")
			}
			if got != tc.want {
				t.Fatalf("first lookup = %+v, want %+v", got, tc.want)
			}
			for range 3 {
				if n := sourceDelta(src, func() { got = tc.lookup() }); n != 0 {
					t.Fatalf("lookup after a fill made %d Source calls, want 0", n)
				}
				if got != tc.want {
					t.Fatalf("cached lookup = %+v, want %+v", got, tc.want)
				}
			}
		})
	}
}

func testInvalidateFriend(t *testing.T, c *relcache.Cache, src *Source) {
	ctx := t.Context()
	base := ids()
	a, b := base+1, base+2
	src.SetFriend(a, b, true)
	if !isFriend(t, c, a, b) || !isFriend(t, c, b, a) {
		t.Fatal("not friends before the change")
	}
	src.SetFriend(a, b, false)
	if !isFriend(t, c, a, b) || !isFriend(t, c, b, a) {
		t.Fatal("the change was visible without an invalidation: not cached")
	}
	must(t, c.InvalidateFriend(ctx, b, a)) // either order drops both directions
	if n := sourceDelta(src, func() {
		if isFriend(t, c, a, b) || isFriend(t, c, b, a) {
			t.Fatal("still friends after the invalidation")
		}
	}); n != 2 {
		t.Fatalf("reload made %d Source calls, want 2", n)
	}
	// And back: a cached negative is dropped the same way.
	src.SetFriend(a, b, true)
	must(t, c.InvalidateFriend(ctx, a, b))
	if !isFriend(t, c, a, b) || !isFriend(t, c, b, a) {
		t.Fatal("not friends after the second invalidation")
	}
}

func testInvalidateBlock(t *testing.T, c *relcache.Cache, src *Source) {
	base := ids()
	a, b := base+1, base+2
	src.SetBlock(a, b, true)
	if !isBlocked(t, c, a, b) || isBlocked(t, c, b, a) {
		t.Fatal("wrong block state before the change")
	}
	src.SetBlock(a, b, false)
	src.SetBlock(b, a, true)
	must(t, c.InvalidateBlock(t.Context(), a, b))
	if isBlocked(t, c, a, b) {
		t.Fatal("a still blocks b after the invalidation")
	}
	if isBlocked(t, c, b, a) {
		t.Fatal("the invalidation of a->b also dropped b->a (blocks are one-way)")
	}
	must(t, c.InvalidateBlock(t.Context(), b, a))
	if !isBlocked(t, c, b, a) {
		t.Fatal("b->a not reloaded")
	}
}

func testMembershipFields(t *testing.T, c *relcache.Cache, src *Source) {
	base := ids()
	g, u := base+1, base+2
	until := time.Date(2031, 5, 6, 7, 8, 9, 123_456_789, time.UTC)
	src.SetGroup(store.Group{ID: g, MuteAll: true})
	src.SetMember(store.Member{GroupID: g, UserID: u, Role: store.RoleAdmin, MutedUntil: until})
	want := relcache.Membership{GroupExists: true, GroupMuteAll: true, IsMember: true, Role: store.RoleAdmin,
		MutedUntil: until.Truncate(time.Millisecond)}
	for i := range 2 { // a miss, then a hit
		got := membership(t, c, g, u)
		if !got.MutedUntil.Equal(want.MutedUntil) {
			t.Fatalf("lookup %d: MutedUntil = %v, want %v", i, got.MutedUntil, want.MutedUntil)
		}
		got.MutedUntil = want.MutedUntil
		if got != want {
			t.Fatalf("lookup %d = %+v, want %+v", i, got, want)
		}
	}
	// An unmuted member has a zero MutedUntil.
	src.SetMember(store.Member{GroupID: g, UserID: u, Role: store.RoleMember})
	must(t, c.InvalidateMember(t.Context(), g, u))
	for range 2 {
		if got := membership(t, c, g, u); !got.MutedUntil.IsZero() || got.Role != store.RoleMember {
			t.Fatalf("after unmute = %+v", got)
		}
	}
}

func testInvalidateMember(t *testing.T, c *relcache.Cache, src *Source) {
	ctx := t.Context()
	base := ids()
	g, u1, u2 := base+1, base+2, base+3
	src.SetGroup(store.Group{ID: g})
	src.SetMember(store.Member{GroupID: g, UserID: u1})
	src.SetMember(store.Member{GroupID: g, UserID: u2})
	membership(t, c, g, u1)
	membership(t, c, g, u2)
	src.SetMember(store.Member{GroupID: g, UserID: u1, Role: store.RoleAdmin})
	src.RemoveMember(g, u2)
	must(t, c.InvalidateMember(ctx, g, u1))
	if m := membership(t, c, g, u1); m.Role != store.RoleAdmin {
		t.Fatalf("u1 after invalidation = %+v, want admin", m)
	}
	if m := membership(t, c, g, u2); !m.IsMember {
		t.Fatal("invalidating u1 dropped u2's entry")
	}
	must(t, c.InvalidateMember(ctx, g, u1, u2))
	if m := membership(t, c, g, u2); m.IsMember {
		t.Fatal("u2 still a member after the invalidation")
	}
	if n := sourceDelta(src, func() { membership(t, c, g, u1) }); n != 1 {
		t.Fatalf("u1 reload made %d Source calls, want 1 (the member only)", n)
	}
	must(t, c.InvalidateMember(ctx, g)) // no users: no-op
}

func testInvalidateGroup(t *testing.T, c *relcache.Cache, src *Source) {
	ctx := t.Context()
	base := ids()
	g := base + 1
	users := []int64{base + 2, base + 3, base + 4}
	src.SetGroup(store.Group{ID: g})
	for _, u := range users {
		src.SetMember(store.Member{GroupID: g, UserID: u})
		membership(t, c, g, u)
	}
	src.SetGroup(store.Group{ID: g, MuteAll: true})
	for _, u := range users {
		src.SetMember(store.Member{GroupID: g, UserID: u, Role: store.RoleAdmin})
	}
	must(t, c.InvalidateGroup(ctx, g))
	before := src.Calls(relcache.KindMember)
	for _, u := range users {
		if m := membership(t, c, g, u); !m.GroupMuteAll || m.Role != store.RoleAdmin {
			t.Fatalf("%d after InvalidateGroup = %+v, want mute-all and admin", u, m)
		}
	}
	if n := src.Calls(relcache.KindMember) - before; n != int64(len(users)) {
		t.Fatalf("member reloads = %d, want %d (every member entry dropped)", n, len(users))
	}
	for _, u := range users { // cached again
		if n := sourceDelta(src, func() { membership(t, c, g, u) }); n != 0 {
			t.Fatalf("lookup after reload made %d Source calls", n)
		}
	}

	src.DismissGroup(g)
	must(t, c.InvalidateGroup(ctx, g))
	before = src.Calls(relcache.KindMember)
	for range 2 {
		for _, u := range users {
			if m := membership(t, c, g, u); m != (relcache.Membership{GroupExists: true, GroupDismissed: true, GroupMuteAll: true}) {
				t.Fatalf("after dismiss = %+v", m)
			}
		}
	}
	if n := src.Calls(relcache.KindMember) - before; n != 0 {
		t.Fatalf("a dismissed group's lookups read %d members, want 0", n)
	}
}

func testUnknownGroup(t *testing.T, c *relcache.Cache, src *Source) {
	base := ids()
	g, u := base+1, base+2
	for range 3 {
		if m := membership(t, c, g, u); m != (relcache.Membership{}) {
			t.Fatalf("unknown group = %+v, want zero", m)
		}
	}
	if n := src.Calls(relcache.KindGroup); n != 1 {
		t.Fatalf("group reads = %d, want 1 (negative cached)", n)
	}
	if n := src.Calls(relcache.KindMember); n != 0 {
		t.Fatalf("member reads of an unknown group = %d, want 0", n)
	}
	src.SetGroup(store.Group{ID: g})
	src.SetMember(store.Member{GroupID: g, UserID: u})
	must(t, c.InvalidateGroup(t.Context(), g))
	if m := membership(t, c, g, u); !m.GroupExists || !m.IsMember {
		t.Fatalf("after creation = %+v", m)
	}
}

func testSourceError(t *testing.T, c *relcache.Cache, src *Source) {
	base := ids()
	a, b, g := base+1, base+2, base+3
	src.SetFriend(a, b, true)
	src.SetBlock(a, b, true)
	src.SetGroup(store.Group{ID: g})
	src.SetMember(store.Member{GroupID: g, UserID: a})
	boom := errors.New("boom")
	src.SetError(boom)
	ctx := t.Context()
	if _, err := c.IsFriend(ctx, a, b); !errors.Is(err, boom) {
		t.Fatalf("IsFriend error = %v, want boom", err)
	}
	if _, err := c.IsBlocked(ctx, a, b); !errors.Is(err, boom) {
		t.Fatalf("IsBlocked error = %v, want boom", err)
	}
	if _, err := c.Membership(ctx, g, a); !errors.Is(err, boom) {
		t.Fatalf("Membership error = %v, want boom", err)
	}
	src.SetError(nil)
	// Nothing was cached, and the failed fills left no lease behind: the
	// next lookups read the Source and fill, the ones after hit.
	if n := sourceDelta(src, func() {
		if !isFriend(t, c, a, b) || !isBlocked(t, c, a, b) || !membership(t, c, g, a).IsMember {
			t.Fatal("wrong answers after the error cleared")
		}
	}); n != 4 {
		t.Fatalf("lookups after the error made %d Source calls, want 4", n)
	}
	if n := sourceDelta(src, func() { isFriend(t, c, a, b); isBlocked(t, c, a, b); membership(t, c, g, a) }); n != 0 {
		t.Fatalf("lookups after the refill made %d Source calls, want 0", n)
	}
	// A member read failing after the group read: the group entry is kept.
	g2 := base + 4
	src.SetGroup(store.Group{ID: g2})
	src.OnLoad(relcache.KindGroup, func(relcache.Key) { src.SetError(boom) })
	if _, err := c.Membership(ctx, g2, a); !errors.Is(err, boom) {
		t.Fatalf("Membership error = %v, want boom", err)
	}
	src.OnLoad(relcache.KindGroup, nil)
	src.SetError(nil)
	if m := membership(t, c, g2, a); !m.GroupExists || m.IsMember {
		t.Fatalf("Membership = %+v", m)
	}
}

// blockOnce makes the next Source call of kind k wait, after it read the
// state, until release is called.
func blockOnce(src *Source, k relcache.Kind) (reading <-chan struct{}, release func()) {
	r, rel := make(chan struct{}), make(chan struct{})
	var once sync.Once
	src.OnLoad(k, func(relcache.Key) {
		once.Do(func() {
			close(r)
			<-rel
		})
	})
	return r, func() { close(rel) }
}

// testRace checks the race rule: a fill that read the store before an
// invalidation does not leave its stale value in the cache.
func testRace(t *testing.T, c *relcache.Cache, src *Source) {
	ctx := t.Context()
	tests := []struct {
		name   string
		setup  func(base int64)
		block  relcache.Kind
		lookup func(base int64) any
		change func(base int64)
		want   any // after the change
	}{
		{
			name:   "friend removed",
			setup:  func(base int64) { src.SetFriend(base+1, base+2, true) },
			block:  relcache.KindFriend,
			lookup: func(base int64) any { return isFriend(t, c, base+1, base+2) },
			change: func(base int64) {
				src.SetFriend(base+1, base+2, false)
				must(t, c.InvalidateFriend(ctx, base+1, base+2))
			},
			want: false,
		},
		{
			name:   "friend added (stale negative)",
			setup:  func(base int64) {},
			block:  relcache.KindFriend,
			lookup: func(base int64) any { return isFriend(t, c, base+1, base+2) },
			change: func(base int64) {
				src.SetFriend(base+1, base+2, true)
				must(t, c.InvalidateFriend(ctx, base+1, base+2))
			},
			want: true,
		},
		{
			name:   "block added",
			setup:  func(base int64) {},
			block:  relcache.KindBlock,
			lookup: func(base int64) any { return isBlocked(t, c, base+1, base+2) },
			change: func(base int64) {
				src.SetBlock(base+1, base+2, true)
				must(t, c.InvalidateBlock(ctx, base+1, base+2))
			},
			want: true,
		},
		{
			name: "member muted during member fill",
			setup: func(base int64) {
				src.SetGroup(store.Group{ID: base + 1})
				src.SetMember(store.Member{GroupID: base + 1, UserID: base + 2})
				membership(t, c, base+1, base+3) // the group entry is cached
			},
			block:  relcache.KindMember,
			lookup: func(base int64) any { return membership(t, c, base+1, base+2) },
			change: func(base int64) {
				src.SetMember(store.Member{GroupID: base + 1, UserID: base + 2, Role: store.RoleAdmin})
				must(t, c.InvalidateMember(ctx, base+1, base+2))
			},
			want: relcache.Membership{GroupExists: true, IsMember: true, Role: store.RoleAdmin},
		},
		{
			name: "group invalidated during member fill (warm group)",
			setup: func(base int64) {
				src.SetGroup(store.Group{ID: base + 1})
				src.SetMember(store.Member{GroupID: base + 1, UserID: base + 2})
				membership(t, c, base+1, base+3)
			},
			block:  relcache.KindMember,
			lookup: func(base int64) any { return membership(t, c, base+1, base+2) },
			change: func(base int64) {
				src.RemoveMember(base+1, base+2)
				must(t, c.InvalidateGroup(ctx, base+1)) // not the member key: the generation must do it
			},
			want: relcache.Membership{GroupExists: true},
		},
		{
			name: "group dismissed during member fill (cold group)",
			setup: func(base int64) {
				src.SetGroup(store.Group{ID: base + 1})
				src.SetMember(store.Member{GroupID: base + 1, UserID: base + 2})
			},
			block:  relcache.KindMember,
			lookup: func(base int64) any { return membership(t, c, base+1, base+2) },
			change: func(base int64) {
				src.DismissGroup(base + 1)
				must(t, c.InvalidateGroup(ctx, base+1))
			},
			want: relcache.Membership{GroupExists: true, GroupDismissed: true},
		},
		{
			name: "group muted during group fill",
			setup: func(base int64) {
				src.SetGroup(store.Group{ID: base + 1})
				src.SetMember(store.Member{GroupID: base + 1, UserID: base + 2})
			},
			block:  relcache.KindGroup,
			lookup: func(base int64) any { return membership(t, c, base+1, base+2) },
			change: func(base int64) {
				src.SetGroup(store.Group{ID: base + 1, MuteAll: true})
				must(t, c.InvalidateGroup(ctx, base+1))
			},
			want: relcache.Membership{GroupExists: true, GroupMuteAll: true, IsMember: true},
		},
		{
			name:   "group created during negative fill",
			setup:  func(base int64) {},
			block:  relcache.KindGroup,
			lookup: func(base int64) any { return membership(t, c, base+1, base+2) },
			change: func(base int64) {
				src.SetGroup(store.Group{ID: base + 1})
				src.SetMember(store.Member{GroupID: base + 1, UserID: base + 2, Role: store.RoleOwner})
				must(t, c.InvalidateGroup(ctx, base+1))
			},
			want: relcache.Membership{GroupExists: true, IsMember: true, Role: store.RoleOwner},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := ids()
			tc.setup(base)
			reading, release := blockOnce(src, tc.block)
			defer src.OnLoad(tc.block, nil)
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.lookup(base) // its answer may be the old state: it began first
			}()
			<-reading // the fill has read the old state
			tc.change(base)
			release()
			<-done
			for i := range 2 {
				if got := tc.lookup(base); got != tc.want {
					t.Fatalf("lookup %d after the invalidation = %+v, want %+v (a stale fill survived)", i, got, tc.want)
				}
			}
		})
	}
}

func testConcurrentMisses(t *testing.T, c *relcache.Cache, src *Source) {
	base := ids()
	g := base + 100
	src.SetGroup(store.Group{ID: g})
	for i := int64(0); i < 8; i += 2 {
		src.SetFriend(base+i, base+i+1, true)
		src.SetBlock(base+i, base+i+1, true)
		src.SetMember(store.Member{GroupID: g, UserID: base + i})
	}
	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for r := range rounds {
				i := int64(r % 8)
				ctx := t.Context()
				f, err1 := c.IsFriend(ctx, base+i, base+i+1)
				b, err2 := c.IsBlocked(ctx, base+i, base+i+1)
				m, err3 := c.Membership(ctx, g, base+i)
				if err := errors.Join(err1, err2, err3); err != nil {
					errc <- err
					return
				}
				want := i%2 == 0
				if f != want || b != want || m.IsMember != want || !m.GroupExists {
					errc <- fmt.Errorf("pair %d: friend %v blocked %v member %+v, want %v", i, f, b, m, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if n, max := src.TotalCalls(), int64(workers*rounds*4); n >= max {
		t.Fatalf("%d Source calls for %d lookups: nothing cached", n, max)
	}
	if n := sourceDelta(src, func() {
		for i := int64(0); i < 8; i++ {
			isFriend(t, c, base+i, base+i+1)
			isBlocked(t, c, base+i, base+i+1)
			membership(t, c, g, base+i)
		}
	}); n != 0 {
		t.Fatalf("lookups after the concurrent fills made %d Source calls, want 0", n)
	}
}

// testConcurrentInvalidation toggles relations while readers look them up;
// once the writer stops, every lookup must see the final state.
func testConcurrentInvalidation(t *testing.T, c *relcache.Cache, src *Source) {
	base := ids()
	a, b, g := base+1, base+2, base+3
	src.SetGroup(store.Group{ID: g})
	const toggles = 40
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			ctx := context.Background()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.IsFriend(ctx, a, b); err != nil {
					t.Error(err)
					return
				}
				if _, err := c.Membership(ctx, g, a); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	ctx := t.Context()
	for i := range toggles {
		on := i%2 == 0
		src.SetFriend(a, b, on)
		must(t, c.InvalidateFriend(ctx, a, b))
		if on {
			src.SetMember(store.Member{GroupID: g, UserID: a, Role: store.Role(i % 3)})
			must(t, c.InvalidateMember(ctx, g, a))
		} else {
			src.SetGroup(store.Group{ID: g, MuteAll: i%4 == 1})
			src.RemoveMember(g, a)
			must(t, c.InvalidateGroup(ctx, g))
		}
	}
	close(stop)
	wg.Wait()
	// The last toggle (i = toggles-1, odd) removed the friendship and the
	// membership and set MuteAll to (toggles-1)%4 == 1.
	want := relcache.Membership{GroupExists: true, GroupMuteAll: (toggles-1)%4 == 1}
	for range 2 {
		if isFriend(t, c, a, b) {
			t.Fatal("stale friendship after the last invalidation")
		}
		if m := membership(t, c, g, a); m != want {
			t.Fatalf("membership = %+v, want %+v", m, want)
		}
	}
}

func testStats(t *testing.T, c *relcache.Cache, src *Source) {
	base := ids()
	src.SetGroup(store.Group{ID: base})
	for range 3 {
		isFriend(t, c, base+1, base+2)
	}
	for range 2 {
		isBlocked(t, c, base+1, base+2)
	}
	membership(t, c, base, base+1)
	s := c.Stats()
	want := relcache.Stats{
		Friend: relcache.Counts{Hits: 2, Misses: 1},
		Block:  relcache.Counts{Hits: 1, Misses: 1},
		Member: relcache.Counts{Misses: 1},
	}
	if s != want {
		t.Fatalf("Stats = %+v, want %+v", s, want)
	}
	if tot := s.Total(); tot != (relcache.Counts{Hits: 3, Misses: 3}) || tot.HitRatio() != 0.5 {
		t.Fatalf("Total = %+v ratio %v", tot, tot.HitRatio())
	}
}

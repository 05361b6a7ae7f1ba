package logic

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/relcache"
)

var _ RelationCache = (*relcache.Cache)(nil)

// TestRelationCacheCoherent runs the service with the real relation cache
// (memory backend) and checks that, after every kind of change made through
// the API, the cached lookups of the send path answer the new state at once.
func TestRelationCacheCoherent(t *testing.T) {
	for _, f := range storeFactories {
		t.Run(f.name, func(t *testing.T) {
			st := f.open(t)
			cache := relcache.New(relcache.NewMemory(relcache.MemoryConfig{}), st, relcache.DefaultConfig())
			testRelationCacheCoherent(t, newEnvStore(t, st, cache), cache)
		})
	}
}

func testRelationCacheCoherent(t *testing.T, e *env, c *relcache.Cache) {
	ctx := context.Background()
	a, b, x := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "xavier")
	check := func(what string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != want {
			t.Fatalf("%s = %v, want %v", what, got, want)
		}
	}
	isFriend := func(u, v tuser, want bool) {
		t.Helper()
		for range 2 { // the second lookup is a hit
			got, err := c.IsFriend(ctx, u.id, v.id)
			check("IsFriend", got, want, err)
		}
	}
	isBlocked := func(u, v tuser, want bool) {
		t.Helper()
		for range 2 {
			got, err := c.IsBlocked(ctx, u.id, v.id)
			check("IsBlocked", got, want, err)
		}
	}
	member := func(gid int64, u tuser) relcache.Membership {
		t.Helper()
		m, err := c.Membership(ctx, gid, u.id)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := c.Membership(ctx, gid, u.id)
		if err != nil || m2 != m {
			t.Fatalf("second lookup %+v, %v; first %+v", m2, err, m)
		}
		return m
	}

	isFriend(a, b, false)
	isFriend(b, a, false)
	e.befriend(t, a, b)
	isFriend(a, b, true)
	isFriend(b, a, true)

	isBlocked(a, b, false)
	e.ok(t, a, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", b.id), nil)
	isBlocked(a, b, true)
	e.ok(t, a, http.StatusNoContent, "DELETE", path("/api/v1/blocks/%d", b.id), nil)
	isBlocked(a, b, false)

	if m := member(999, x); m.GroupExists {
		t.Fatalf("unknown group: %+v", m)
	}
	gid := e.newGroup(t, a, b)
	g := path("/api/v1/groups/%d", gid)
	if m := member(gid, x); !m.GroupExists || m.IsMember {
		t.Fatalf("x before joining: %+v", m)
	}
	e.ok(t, b, http.StatusOK, "POST", g+"/members", map[string]any{"user_ids": []int64{x.id}})
	if m := member(gid, x); !m.IsMember || m.Role != 0 {
		t.Fatalf("x invited: %+v", m)
	}
	e.ok(t, a, http.StatusOK, "PATCH", path("%s/members/%d", g, x.id), map[string]any{"role": "admin"})
	if m := member(gid, x); m.Role != 1 {
		t.Fatalf("x promoted: %+v", m)
	}
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	e.ok(t, a, http.StatusOK, "PATCH", path("%s/members/%d", g, b.id), map[string]any{"muted_until_ms": until.UnixMilli()})
	if m := member(gid, b); !m.MutedUntil.Equal(until) {
		t.Fatalf("b muted: %+v, want until %v", m, until)
	}
	e.ok(t, a, http.StatusOK, "PATCH", g, map[string]any{"mute_all": true})
	if m := member(gid, b); !m.GroupMuteAll {
		t.Fatalf("mute_all: %+v", m)
	}
	e.ok(t, x, http.StatusNoContent, "DELETE", path("%s/members/%d", g, b.id), nil)
	if m := member(gid, b); m.IsMember {
		t.Fatalf("b kicked: %+v", m)
	}
	e.ok(t, a, http.StatusOK, "POST", g+"/transfer", map[string]any{"user_id": x.id})
	if ma, mx := member(gid, a), member(gid, x); ma.Role != 1 || mx.Role != 2 {
		t.Fatalf("after transfer: a %+v, x %+v", ma, mx)
	}
	e.ok(t, a, http.StatusNoContent, "DELETE", path("%s/members/%d", g, a.id), nil)
	if m := member(gid, a); m.IsMember {
		t.Fatalf("a left: %+v", m)
	}
	e.ok(t, x, http.StatusNoContent, "DELETE", g, nil)
	if m := member(gid, x); !m.GroupDismissed || m.IsMember {
		t.Fatalf("dismissed: %+v", m)
	}

	e.ok(t, a, http.StatusNoContent, "DELETE", path("/api/v1/friends/%d", b.id), nil)
	isFriend(a, b, false)
	isFriend(b, a, false)
	if s := c.Stats(); s.Friend.Hits == 0 || s.Block.Hits == 0 || s.Member.Hits == 0 {
		t.Fatalf("the cache was not used: %+v", s)
	}
}

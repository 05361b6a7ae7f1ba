package relcache_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/relcache/cachetest"
	"github.com/goimdev/goim/internal/store"
)

func TestMemoryConformance(t *testing.T) {
	configs := []struct {
		name string
		cfg  relcache.MemoryConfig
	}{
		{"default", relcache.MemoryConfig{}},
		{"one_shard", relcache.MemoryConfig{Shards: 1}},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			cachetest.Run(t, func(t *testing.T) relcache.Backend { return relcache.NewMemory(c.cfg) })
		})
	}
}

func fillMem(t *testing.T, b relcache.Backend, k relcache.Key, v relcache.Value, ttl time.Duration) {
	t.Helper()
	r, err := b.Get(t.Context(), k)
	if err != nil || r.Lease == 0 {
		t.Fatalf("Get(%v) = %+v, %v; want a lease", k, r, err)
	}
	if err := b.Set(t.Context(), relcache.Item{Key: k, Lease: r.Lease, Value: v, TTL: ttl}); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryExpiry(t *testing.T) {
	clock := newClock()
	b := relcache.NewMemory(relcache.MemoryConfig{Now: clock.Now, LeaseTTL: 2 * time.Second})
	src := cachetest.NewSource()
	c := relcache.New(b, src, relcache.Config{TTL: 10 * time.Minute, NegativeTTL: time.Minute})
	src.SetFriend(1, 2, true)
	isFriend := func(a, o int64) {
		t.Helper()
		if _, err := c.IsFriend(t.Context(), a, o); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name       string
		a, o       int64
		fresh, old time.Duration // still cached at fresh, expired at old
	}{
		{"positive", 1, 2, 9*time.Minute - time.Second, 10*time.Minute + time.Second},
		{"negative", 1, 3, 54*time.Second - time.Second, time.Minute + time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := clock.Now()
			isFriend(tc.a, tc.o)
			clock.Advance(tc.fresh)
			before := src.TotalCalls()
			isFriend(tc.a, tc.o)
			if n := src.TotalCalls() - before; n != 0 {
				t.Fatalf("entry expired before %v", tc.fresh)
			}
			clock.Advance(tc.old - clock.Now().Sub(start))
			isFriend(tc.a, tc.o)
			if n := src.TotalCalls() - before; n != 1 {
				t.Fatalf("entry still cached after %v", tc.old)
			}
		})
	}
	t.Run("lease", func(t *testing.T) {
		k := relcache.BlockKey(5, 6)
		r, _ := b.Get(t.Context(), k)
		if r2, _ := b.Get(t.Context(), k); r.Lease == 0 || r2.Lease != 0 {
			t.Fatalf("Get = %+v then %+v, want a lease then busy", r, r2)
		}
		clock.Advance(2*time.Second + time.Millisecond)
		r3, _ := b.Get(t.Context(), k)
		if r3.Lease == 0 || r3.Lease == r.Lease {
			t.Fatalf("Get after the lease expired = %+v, want a new lease", r3)
		}
	})
}

// TestMemoryEviction: a full shard evicts entries not hit since the hand
// last passed (CLOCK), keeping the ones that were.
func TestMemoryEviction(t *testing.T) {
	b := relcache.NewMemory(relcache.MemoryConfig{Shards: 1, MaxEntries: 100})
	ctx := t.Context()
	v := relcache.Value{Found: true}
	for i := range int64(100) {
		fillMem(t, b, relcache.FriendKey(i, 0), v, time.Hour)
	}
	for i := range int64(50) { // hit the first half
		if r, _ := b.Get(ctx, relcache.FriendKey(i, 0)); !r.Hit {
			t.Fatalf("key %d not cached", i)
		}
	}
	for i := int64(100); i < 150; i++ {
		fillMem(t, b, relcache.FriendKey(i, 0), v, time.Hour)
	}
	if n := b.Len(); n != 100 {
		t.Fatalf("Len = %d, want 100 (the bound)", n)
	}
	for _, i := range []int64{0, 25, 49, 100, 125, 149} {
		if r, _ := b.Get(ctx, relcache.FriendKey(i, 0)); !r.Hit {
			t.Fatalf("key %d was evicted; want the hit and the new ones kept", i)
		}
	}
	if n := b.Len(); n != 100 {
		t.Fatalf("Len = %d after hits, want 100: the cold keys 50..99 must be the evicted ones", n)
	}
	// Deleting frees room without evicting.
	if err := b.Delete(ctx, relcache.FriendKey(0, 0), relcache.FriendKey(1, 0)); err != nil {
		t.Fatal(err)
	}
	fillMem(t, b, relcache.FriendKey(200, 0), v, time.Hour)
	if r, _ := b.Get(ctx, relcache.FriendKey(2, 0)); !r.Hit || b.Len() != 99 {
		t.Fatalf("after delete + insert: key 2 hit %v, Len %d; want true, 99", r.Hit, b.Len())
	}
}

// TestMemoryBoundUnderLoad: concurrent lookups over many more keys than
// the bound keep the size within it (and are race-free).
func TestMemoryBoundUnderLoad(t *testing.T) {
	b := relcache.NewMemory(relcache.MemoryConfig{Shards: 4, MaxEntries: 64})
	src := cachetest.NewSource()
	c := relcache.New(b, src, relcache.Config{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				u := int64(w*1000 + i%300)
				src.SetFriend(u, u+1, i%2 == 0)
				if _, err := c.IsFriend(t.Context(), u, u+1); err != nil {
					t.Error(err)
					return
				}
				if i%7 == 0 {
					if err := c.InvalidateFriend(t.Context(), u, u+1); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if n := b.Len(); n > 64 || n == 0 {
		t.Fatalf("Len = %d, want in (0, 64]", n)
	}
}

// TestMemoryHitAllocs: a hit on the in-process backend allocates nothing.
func TestMemoryHitAllocs(t *testing.T) {
	src := cachetest.NewSource()
	c := relcache.New(relcache.NewMemory(relcache.MemoryConfig{}), src, relcache.Config{})
	ctx := context.Background()
	src.SetFriend(1, 2, true)
	src.SetGroup(store.Group{ID: 3})
	src.SetMember(store.Member{GroupID: 3, UserID: 1})
	tests := []struct {
		name string
		fn   func()
	}{
		{"IsFriend", func() { c.IsFriend(ctx, 1, 2) }},
		{"IsBlocked", func() { c.IsBlocked(ctx, 1, 2) }},
		{"Membership", func() { c.Membership(ctx, 3, 1) }},
	}
	for _, tc := range tests {
		tc.fn() // fill
		before := src.TotalCalls()
		if a := testing.AllocsPerRun(100, tc.fn); a != 0 {
			t.Errorf("%s hit: %v allocs, want 0", tc.name, a)
		}
		if src.TotalCalls() != before {
			t.Errorf("%s: the measured calls were not hits", tc.name)
		}
	}
}

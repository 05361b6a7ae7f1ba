package relcache_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/relcache/cachetest"
	"github.com/goimdev/goim/internal/store"
)

type benchBackend struct {
	name string
	new  func(b *testing.B) relcache.Backend
}

var benchPrefixSeq atomic.Int64

func benchBackends() []benchBackend {
	return []benchBackend{
		{"memory", func(*testing.B) relcache.Backend { return relcache.NewMemory(relcache.MemoryConfig{}) }},
		{"redis", func(b *testing.B) relcache.Backend {
			c, prefix := redisClient(b)
			return newRedis(b, c, relcache.RedisConfig{Prefix: prefix + strconv.FormatInt(benchPrefixSeq.Add(1), 10) + ":"})
		}},
	}
}

func quietConfig() relcache.Config { return relcache.Config{Logger: slog.New(slog.DiscardHandler)} }

// BenchmarkLookup measures one relation check on a hit (every iteration the
// same relation) and on a miss (every iteration a relation never seen: the
// backend lookup and lease, the fake Source, the fill). The fake Source
// costs ~100ns; see internal/relcache/storebench for misses against SQLite.
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	for _, bb := range benchBackends() {
		b.Run(bb.name, func(b *testing.B) {
			lookups := []struct {
				name string
				hit  func(c *relcache.Cache) error
				miss func(c *relcache.Cache, i int64) error
			}{
				{"IsFriend",
					func(c *relcache.Cache) error { _, err := c.IsFriend(ctx, 1, 2); return err },
					func(c *relcache.Cache, i int64) error { _, err := c.IsFriend(ctx, 1_000_000+i, 1); return err }},
				{"IsBlocked",
					func(c *relcache.Cache) error { _, err := c.IsBlocked(ctx, 2, 1); return err },
					func(c *relcache.Cache, i int64) error { _, err := c.IsBlocked(ctx, 1_000_000+i, 1); return err }},
				{"Membership",
					func(c *relcache.Cache) error { _, err := c.Membership(ctx, 1, 1); return err },
					// a new member of a cached group: the member entry misses
					func(c *relcache.Cache, i int64) error { _, err := c.Membership(ctx, 1, 1_000_000+i); return err }},
				{"MembershipColdGroup",
					nil,
					// a new group: both entries miss
					func(c *relcache.Cache, i int64) error { _, err := c.Membership(ctx, 1_000_000+i, 1); return err }},
			}
			for _, l := range lookups {
				b.Run(l.name, func(b *testing.B) {
					if l.hit != nil {
						b.Run("hit", func(b *testing.B) {
							c, src := newBenchCache(b, bb)
							if err := l.hit(c); err != nil {
								b.Fatal(err)
							}
							calls := src.TotalCalls()
							b.ReportAllocs()
							b.ResetTimer()
							for range b.N {
								if err := l.hit(c); err != nil {
									b.Fatal(err)
								}
							}
							b.StopTimer()
							if src.TotalCalls() != calls {
								b.Fatal("a hit called the Source")
							}
						})
					}
					b.Run("miss", func(b *testing.B) {
						c, src := newBenchCache(b, bb)
						if l.hit != nil { // warms the group for Membership
							if err := l.hit(c); err != nil {
								b.Fatal(err)
							}
						}
						b.ReportAllocs()
						b.ResetTimer()
						for i := range b.N {
							if err := l.miss(c, int64(i)); err != nil {
								b.Fatal(err)
							}
						}
						b.StopTimer()
						if s := c.Stats().Total(); s.Misses < uint64(b.N) {
							b.Fatalf("%d misses for %d lookups", s.Misses, b.N)
						}
						_ = src
					})
				})
			}
			if bb.name == "memory" {
				b.Run("IsFriend/hit-parallel", func(b *testing.B) {
					c, _ := newBenchCache(b, bb)
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := c.IsFriend(ctx, 1, 2); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		})
	}
}

func newBenchCache(b *testing.B, bb benchBackend) (*relcache.Cache, *cachetest.Source) {
	src := cachetest.NewSource()
	src.SetFriend(1, 2, true)
	src.SetBlock(2, 1, true)
	src.SetGroup(store.Group{ID: 1})
	src.SetMember(store.Member{GroupID: 1, UserID: 1, Role: store.RoleOwner})
	return relcache.New(bb.new(b), src, quietConfig()), src
}

// BenchmarkRealisticMix runs cachetest.DefaultMix (90% of the lookups over
// the hottest 10% of pairs and groups, changes with invalidation at 1% of
// operations) on the fake Source and reports the hit ratio.
func BenchmarkRealisticMix(b *testing.B) {
	for _, bb := range benchBackends() {
		b.Run(bb.name, func(b *testing.B) {
			mix := cachetest.DefaultMix()
			src := cachetest.NewSource()
			mix.Seed(src)
			c := relcache.New(bb.new(b), src, quietConfig())
			mix.Run(b, c, mix.SourceChange(src, c))
		})
	}
}

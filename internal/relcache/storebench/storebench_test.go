package storebench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/relcache/cachetest"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/mysql"
	"github.com/goimdev/goim/internal/store/sqlite"
	"github.com/goimdev/goim/internal/testenv"
)

// relStore is what the fixture needs from a store.
type relStore interface {
	relcache.Relations
	CreateUser(ctx context.Context, u *store.User) (int64, error)
}

// fixture is a store seeded with a cachetest.Mix population.
type fixture struct {
	st  relStore
	mix cachetest.Mix
	// the current state of the mix's changes (applied by change)
	friends, blocks, muted map[[2]int64]bool
}

// newFixture seeds st (a fresh store: user and group ids start at 1).
func newFixture(b testing.TB, st any, mix cachetest.Mix) *fixture {
	rs, ok := st.(relStore)
	if !ok {
		b.Skipf("%T does not implement the relation store methods yet", st)
	}
	ctx := context.Background()
	fx := &fixture{st: rs, mix: mix, friends: map[[2]int64]bool{}, blocks: map[[2]int64]bool{}, muted: map[[2]int64]bool{}}
	start := time.Now()
	users := max(2*mix.Pairs, mix.Groups*mix.GroupSize)
	for i := 1; i <= users; i++ {
		id, err := rs.CreateUser(ctx, &store.User{Username: fmt.Sprint("u", i), PasswordHash: "x"})
		if err != nil || id != int64(i) {
			b.Fatalf("CreateUser %d = %d, %v (want a fresh store)", i, id, err)
		}
	}
	for i := range mix.Pairs {
		s, r := mix.Pair(i)
		if err := fx.befriend(ctx, rs, s, r); err != nil {
			b.Fatal(err)
		}
		if mix.Blocked(i) {
			if err := rs.BlockUser(ctx, r, s); err != nil {
				b.Fatal(err)
			}
			fx.blocks[[2]int64{r, s}] = true
		}
	}
	for g := 1; g <= mix.Groups; g++ {
		members := make([]int64, 0, mix.GroupSize-1)
		for i := 1; i < mix.GroupSize; i++ {
			members = append(members, mix.Member(g, i))
		}
		id, err := rs.CreateGroup(ctx, &store.Group{OwnerID: mix.Member(g, 0), Name: fmt.Sprint("g", g), MaxMembers: mix.GroupSize}, members)
		if err != nil || id != int64(g) {
			b.Fatalf("CreateGroup %d = %d, %v", g, id, err)
		}
	}
	b.Logf("seeded %d users, %d pairs, %d groups of %d in %v", users, mix.Pairs, mix.Groups, mix.GroupSize, time.Since(start).Round(time.Millisecond))
	return fx
}

func (fx *fixture) befriend(ctx context.Context, s relcache.Relations, a, b int64) error {
	req, _, err := s.CreateFriendRequest(ctx, a, b, "")
	if err != nil {
		return err
	}
	if _, err := s.ResolveFriendRequest(ctx, req.ID, true); err != nil {
		return err
	}
	fx.friends[[2]int64{a, b}] = true
	return nil
}

// change applies a mix change through s (a relcache.Wrap of the store, so
// that it is invalidated).
func (fx *fixture) change(s relcache.Relations) func(context.Context, cachetest.Change) error {
	return func(ctx context.Context, ch cachetest.Change) error {
		k := [2]int64{ch.A, ch.B}
		switch ch.Kind {
		case relcache.KindFriend:
			if fx.friends[k] {
				fx.friends[k] = false
				return s.DeleteFriend(ctx, ch.A, ch.B)
			}
			return fx.befriend(ctx, s, ch.A, ch.B)
		case relcache.KindBlock:
			fx.blocks[k] = !fx.blocks[k]
			if fx.blocks[k] {
				return s.BlockUser(ctx, ch.A, ch.B)
			}
			return s.UnblockUser(ctx, ch.A, ch.B)
		default:
			fx.muted[k] = !fx.muted[k]
			until := time.Time{}
			if fx.muted[k] {
				until = time.Now().Add(time.Hour)
			}
			return s.UpdateMember(ctx, ch.A, ch.B, store.MemberUpdate{MutedUntil: &until})
		}
	}
}

type backend struct {
	name string
	new  func(b testing.TB) relcache.Backend
}

func backends() []backend {
	return []backend{
		{"memory", func(testing.TB) relcache.Backend { return relcache.NewMemory(relcache.MemoryConfig{}) }},
		{"redis", func(b testing.TB) relcache.Backend {
			addr := os.Getenv("GOIM_TEST_REDIS_ADDR")
			if addr == "" {
				b.Skip("GOIM_TEST_REDIS_ADDR not set: Redis suite skipped (apt-get install -y redis-server, then GOIM_TEST_REDIS_ADDR=127.0.0.1:6379)")
			}
			c := redis.NewClient(&redis.Options{Addr: addr})
			prefix := fmt.Sprintf("goimbench:relcache:%016x:", rand.Uint64())
			b.Cleanup(func() {
				defer c.Close()
				ctx := context.Background()
				iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
				for iter.Next(ctx) {
					c.Del(ctx, iter.Val())
				}
			})
			r, err := relcache.NewRedis(c, relcache.RedisConfig{Prefix: prefix})
			if err != nil {
				b.Fatal(err)
			}
			return r
		}},
	}
}

func quiet() relcache.Config { return relcache.Config{Logger: slog.New(slog.DiscardHandler)} }

// run runs the store's sub-benchmarks:
//
//	direct/<check>          the check on the store alone (no cache)
//	<backend>/<check>/hit   a cached check
//	<backend>/<check>/miss  an invalidated check: lookup, lease, store query, fill
//	<backend>/mix           cachetest.Mix, changes written through the store
func run(b *testing.B, fx *fixture) {
	ctx := context.Background()
	n := fx.mix.Pairs
	pair := func(i int) (int64, int64) { return fx.mix.Pair(i % n) }
	member := func(i int) (int64, int64) {
		g := i%fx.mix.Groups + 1
		return int64(g), fx.mix.Member(g, (i/fx.mix.Groups)%fx.mix.GroupSize)
	}
	b.Run("direct", func(b *testing.B) {
		checks := []struct {
			name string
			fn   func(i int) error
		}{
			{"Friend", func(i int) error {
				s, r := pair(i)
				_, err := fx.st.Friend(ctx, s, r)
				if fx.friends[[2]int64{s, r}] {
					return err
				}
				return nil
			}},
			{"IsBlocked", func(i int) error { s, r := pair(i); _, err := fx.st.IsBlocked(ctx, r, s); return err }},
			{"GroupMember", func(i int) error {
				g, u := member(i)
				if _, err := fx.st.Group(ctx, g); err != nil {
					return err
				}
				_, err := fx.st.Member(ctx, g, u)
				if err != nil && fx.muted[[2]int64{g, u}] {
					return err
				}
				return nil
			}},
		}
		for _, c := range checks {
			b.Run(c.name, func(b *testing.B) {
				b.ReportAllocs()
				for i := range b.N {
					if err := c.fn(i); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			checks := []struct {
				name       string
				lookup     func(c *relcache.Cache, i int) error
				invalidate func(c *relcache.Cache, i int) error
			}{
				{"IsFriend",
					func(c *relcache.Cache, i int) error { s, r := pair(i); _, err := c.IsFriend(ctx, s, r); return err },
					func(c *relcache.Cache, i int) error { s, r := pair(i); return c.InvalidateFriend(ctx, s, r) }},
				{"IsBlocked",
					func(c *relcache.Cache, i int) error { s, r := pair(i); _, err := c.IsBlocked(ctx, r, s); return err },
					func(c *relcache.Cache, i int) error { s, r := pair(i); return c.InvalidateBlock(ctx, r, s) }},
				{"Membership",
					func(c *relcache.Cache, i int) error { g, u := member(i); _, err := c.Membership(ctx, g, u); return err },
					func(c *relcache.Cache, i int) error { g, u := member(i); return c.InvalidateMember(ctx, g, u) }},
				{"MembershipColdGroup",
					func(c *relcache.Cache, i int) error { g, u := member(i); _, err := c.Membership(ctx, g, u); return err },
					func(c *relcache.Cache, i int) error { g, _ := member(i); return c.InvalidateGroup(ctx, g) }},
			}
			for _, ch := range checks {
				b.Run(ch.name, func(b *testing.B) {
					if ch.name != "MembershipColdGroup" {
						b.Run("hit", func(b *testing.B) {
							c := relcache.New(be.new(b), fx.st, quiet())
							for i := range min(n, 1000) {
								if err := ch.lookup(c, i); err != nil {
									b.Fatal(err)
								}
							}
							b.ReportAllocs()
							b.ResetTimer()
							for i := range b.N {
								if err := ch.lookup(c, i%min(n, 1000)); err != nil {
									b.Fatal(err)
								}
							}
							b.StopTimer()
							if s := c.Stats().Total(); s.Misses != uint64(min(n, 1000)) {
								b.Fatalf("%d misses, want only the %d fills", s.Misses, min(n, 1000))
							}
						})
					}
					b.Run("miss", func(b *testing.B) {
						c := relcache.New(be.new(b), fx.st, quiet())
						b.ReportAllocs()
						b.ResetTimer()
						for i := range b.N {
							b.StopTimer()
							if err := ch.invalidate(c, i); err != nil {
								b.Fatal(err)
							}
							b.StartTimer()
							if err := ch.lookup(c, i); err != nil {
								b.Fatal(err)
							}
						}
						b.StopTimer()
						if s := c.Stats().Total(); s.Hits != 0 {
							b.Fatalf("%d hits, want none", s.Hits)
						}
					})
				})
			}
			b.Run("mix", func(b *testing.B) {
				c := relcache.New(be.new(b), fx.st, quiet())
				fx.mix.Run(b, c, fx.change(relcache.Wrap(fx.st, c, nil)))
			})
		})
	}
}

// BenchmarkSQLite: the relation cache over the SQLite store.
func BenchmarkSQLite(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "goim.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	mix := cachetest.DefaultMix()
	mix.Pairs, mix.Groups = 2000, 20
	run(b, newFixture(b, st, mix))
}

// BenchmarkMySQL: the relation cache over the MySQL store (a fresh
// database on the server of GOIM_TEST_MYSQL_DSN).
func BenchmarkMySQL(b *testing.B) {
	dsn := testenv.MySQLDSN(b, "goim_relcache_bench")
	st, err := mysql.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	mix := cachetest.DefaultMix()
	mix.Pairs, mix.Groups = 500, 5
	run(b, newFixture(b, st, mix))
}

// TestCacheMatchesStore runs the mix on a small SQLite population with its
// changes written through relcache.Wrap, then checks that every cached
// answer equals the store's: invalidation by the wrapper keeps the cache
// right on the real store.
func TestCacheMatchesStore(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "goim.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			mix := cachetest.Mix{Pairs: 40, Groups: 4, GroupSize: 10, HotFraction: 0.1, HotShare: 0.9,
				DirectShare: 0.7, ChangeRate: 0.2}
			fx := newFixture(t, st, mix)
			c := relcache.New(be.new(t), st, quiet())
			ops := mix.Ops(t.Context(), c, fx.change(relcache.Wrap(st, c, nil)))
			for range 2000 {
				if err := ops(); err != nil {
					t.Fatal(err)
				}
			}
			ctx := t.Context()
			for i := range mix.Pairs {
				s, r := mix.Pair(i)
				f, err1 := c.IsFriend(ctx, s, r)
				_, ferr := st.Friend(ctx, s, r)
				bl, err2 := c.IsBlocked(ctx, r, s)
				want, err3 := st.IsBlocked(ctx, r, s)
				if err := errors.Join(err1, err2, err3); err != nil {
					t.Fatal(err)
				}
				if f != (ferr == nil) || bl != want {
					t.Fatalf("pair %d: cache friend %v blocked %v, store friend %v (%v) blocked %v", i, f, bl, ferr == nil, ferr, want)
				}
			}
			for g := 1; g <= mix.Groups; g++ {
				for i := range mix.GroupSize {
					u := mix.Member(g, i)
					m, err := c.Membership(ctx, int64(g), u)
					if err != nil {
						t.Fatal(err)
					}
					sm, err := st.Member(ctx, int64(g), u)
					if err != nil {
						t.Fatal(err)
					}
					if !m.IsMember || m.Role != sm.Role || !m.MutedUntil.Equal(sm.MutedUntil.Truncate(time.Millisecond)) {
						t.Fatalf("group %d user %d: cache %+v, store %+v", g, u, m, sm)
					}
				}
			}
			if s := c.Stats().Total(); s.Hits == 0 || s.Misses == 0 {
				t.Fatalf("stats %+v: the mix did not exercise both hits and misses", s)
			}
		})
	}
}

package cachetest

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/store"
)

// Mix is the "realistic mix" workload of the benchmarks: send checks over
// a fixed population where a hot fraction of the pairs and groups gets most
// of the traffic, with relation changes (and their invalidations) at a small
// fraction of the operations.
//
// Population: Pairs one-to-one pairs (users 2i+1 and 2i+2, i < Pairs), all
// friends, the recipient of every 10th pair blocking the sender; Groups
// groups (ids 1..Groups) of GroupSize members each (group g: users
// (g-1)*GroupSize+1 .. g*GroupSize).
//
// An operation is, with probability ChangeRate, a Change; otherwise a
// one-to-one send check (IsBlocked(recipient, sender) and IsFriend(sender,
// recipient)) with probability DirectShare, else a group send check
// (Membership). The pair, group or member is taken from the first
// HotFraction of the population with probability HotShare, otherwise from
// the rest.
type Mix struct {
	Pairs, Groups, GroupSize int
	HotFraction, HotShare    float64
	DirectShare, ChangeRate  float64
}

// DefaultMix: 5000 pairs, 50 groups of 100, 90% of lookups over the hottest
// 10%, 70% one-to-one, changes at 1% of operations.
func DefaultMix() Mix {
	return Mix{Pairs: 5000, Groups: 50, GroupSize: 100, HotFraction: 0.1, HotShare: 0.9, DirectShare: 0.7, ChangeRate: 0.01}
}

// Change is a relation change of the mix, to apply and invalidate:
// KindFriend toggles the friendship of users A and B, KindBlock toggles "A
// blocked B", KindMember changes the mute of user B in group A.
type Change struct {
	Kind relcache.Kind
	A, B int64
}

// Pair returns the users of pair i.
func (m Mix) Pair(i int) (sender, recipient int64) { return int64(2*i + 1), int64(2*i + 2) }

// Member returns the i-th member of group g.
func (m Mix) Member(g, i int) int64 { return int64((g-1)*m.GroupSize + i + 1) }

// Blocked reports whether pair i starts blocked.
func (m Mix) Blocked(i int) bool { return i%10 == 0 }

// Seed puts the initial population in src.
func (m Mix) Seed(src *Source) {
	for i := range m.Pairs {
		s, r := m.Pair(i)
		src.SetFriend(s, r, true)
		src.SetBlock(r, s, m.Blocked(i))
	}
	for g := 1; g <= m.Groups; g++ {
		src.SetGroup(store.Group{ID: int64(g), OwnerID: m.Member(g, 0)})
		for i := range m.GroupSize {
			src.SetMember(store.Member{GroupID: int64(g), UserID: m.Member(g, i)})
		}
	}
}

// SourceChange returns a change function for Run that applies changes to
// src and invalidates them on c.
func (m Mix) SourceChange(src *Source, c relcache.Invalidator) func(context.Context, Change) error {
	friends := make(map[[2]int64]bool)
	blocks := make(map[[2]int64]bool)
	for i := range m.Pairs {
		s, r := m.Pair(i)
		friends[[2]int64{s, r}] = true
		blocks[[2]int64{r, s}] = m.Blocked(i)
	}
	muted := make(map[[2]int64]bool)
	return func(ctx context.Context, ch Change) error {
		k := [2]int64{ch.A, ch.B}
		switch ch.Kind {
		case relcache.KindFriend:
			friends[k] = !friends[k]
			src.SetFriend(ch.A, ch.B, friends[k])
			return c.InvalidateFriend(ctx, ch.A, ch.B)
		case relcache.KindBlock:
			blocks[k] = !blocks[k]
			src.SetBlock(ch.A, ch.B, blocks[k])
			return c.InvalidateBlock(ctx, ch.A, ch.B)
		default:
			muted[k] = !muted[k]
			var until time.Time
			if muted[k] {
				until = time.Now().Add(time.Hour)
			}
			src.SetMember(store.Member{GroupID: ch.A, UserID: ch.B, MutedUntil: until})
			return c.InvalidateMember(ctx, ch.A, ch.B)
		}
	}
}

func (m Mix) pick(rng *rand.Rand, n int) int {
	hot := max(1, int(float64(n)*m.HotFraction))
	if hot >= n || rng.Float64() < m.HotShare {
		return rng.IntN(hot)
	}
	return hot + rng.IntN(n-hot)
}

// op runs one operation and returns the number of lookups it made.
func (m Mix) op(ctx context.Context, rng *rand.Rand, c relcache.Checker, change func(context.Context, Change) error) (int, error) {
	if rng.Float64() < m.ChangeRate {
		var ch Change
		switch x := rng.IntN(4); {
		case x < 2:
			s, r := m.Pair(m.pick(rng, m.Pairs))
			ch = Change{Kind: relcache.KindFriend, A: s, B: r}
		case x == 2:
			s, r := m.Pair(m.pick(rng, m.Pairs))
			ch = Change{Kind: relcache.KindBlock, A: r, B: s}
		default:
			g := m.pick(rng, m.Groups) + 1
			ch = Change{Kind: relcache.KindMember, A: int64(g), B: m.Member(g, m.pick(rng, m.GroupSize))}
		}
		return 0, change(ctx, ch)
	}
	if rng.Float64() < m.DirectShare {
		s, r := m.Pair(m.pick(rng, m.Pairs))
		if _, err := c.IsBlocked(ctx, r, s); err != nil {
			return 1, err
		}
		_, err := c.IsFriend(ctx, s, r)
		return 2, err
	}
	g := m.pick(rng, m.Groups) + 1
	_, err := c.Membership(ctx, int64(g), m.Member(g, m.pick(rng, m.GroupSize)))
	return 1, err
}

// Warm looks every relation of the population up once.
func (m Mix) Warm(ctx context.Context, c relcache.Checker) error {
	for i := range m.Pairs {
		s, r := m.Pair(i)
		if _, err := c.IsBlocked(ctx, r, s); err != nil {
			return err
		}
		if _, err := c.IsFriend(ctx, s, r); err != nil {
			return err
		}
	}
	for g := 1; g <= m.Groups; g++ {
		for i := range m.GroupSize {
			if _, err := c.Membership(ctx, int64(g), m.Member(g, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Ops returns a function running one operation of the mix on c per call
// (a fixed random sequence), for tests.
func (m Mix) Ops(ctx context.Context, c relcache.Checker, change func(context.Context, Change) error) func() error {
	rng := rand.New(rand.NewPCG(3, 4))
	return func() error {
		_, err := m.op(ctx, rng, c, change)
		return err
	}
}

// Run runs the mix on c: Warm (not timed: the steady state of a process
// that has been up for a while), then b.N operations. It reports hit-ratio
// (of the timed lookups), lookups/op and ns/lookup.
func (m Mix) Run(b *testing.B, c *relcache.Cache, change func(context.Context, Change) error) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	if err := m.Warm(ctx, c); err != nil {
		b.Fatal(err)
	}
	before := c.Stats().Total()
	b.ReportAllocs()
	b.ResetTimer()
	lookups := 0
	for range b.N {
		n, err := m.op(ctx, rng, c, change)
		if err != nil {
			b.Fatal(err)
		}
		lookups += n
	}
	b.StopTimer()
	after := c.Stats().Total()
	timed := relcache.Counts{Hits: after.Hits - before.Hits, Misses: after.Misses - before.Misses}
	b.ReportMetric(timed.HitRatio(), "hit-ratio")
	b.ReportMetric(float64(lookups)/float64(b.N), "lookups/op")
	if lookups > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lookups), "ns/lookup")
	}
}

package relcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goimdev/goim/internal/cacheguard"
	"github.com/goimdev/goim/internal/store"
)

// ErrInvalidationLost is returned by an invalidation that could be neither
// applied nor queued: the entry may stay stale until its TTL.
var ErrInvalidationLost = errors.New("relcache: invalidation lost")

// Config configures a Cache. Zero values take the default documented on
// each field.
type Config struct {
	// TTL bounds the life of a positive entry (friends, blocked, member,
	// group exists). Invalidation, not the TTL, keeps entries correct; the
	// TTL only bounds how long a lost invalidation (a crash between commit
	// and invalidation) leaves an entry stale. Up to 10% jitter is
	// subtracted so that entries filled together do not expire together.
	// Default 10m.
	TTL time.Duration `yaml:"ttl"`
	// NegativeTTL bounds the life of a negative entry (not friends, not
	// blocked, not a member, no such group); shorter than TTL because
	// probes of random ids create many of them. Default 2m.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// RetryAfter is how long the cache bypasses a failing backend (answering
	// from the Source) before trying it again. Default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// InvalidateTimeout bounds one invalidation call to the backend; the
	// caller's cancellation does not abort an invalidation. Default 2s.
	InvalidateTimeout time.Duration `yaml:"invalidate_timeout"`
	// MaxPending is the most invalidated keys kept while the backend is
	// failing, deleted before it is used again; beyond it invalidations are
	// lost (counted). Default 100000.
	MaxPending int `yaml:"max_pending"`
	// Logger receives backend failures and recoveries. Default
	// slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// Now is the clock of the failure bypass (tests). Default time.Now.
	Now func() time.Time `yaml:"-"`
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		TTL:               10 * time.Minute,
		NegativeTTL:       2 * time.Minute,
		RetryAfter:        time.Second,
		InvalidateTimeout: 2 * time.Second,
		MaxPending:        100_000,
		Logger:            slog.Default(),
		Now:               time.Now,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.TTL <= 0 {
		c.TTL = d.TTL
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = d.NegativeTTL
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = d.RetryAfter
	}
	if c.InvalidateTimeout <= 0 {
		c.InvalidateTimeout = d.InvalidateTimeout
	}
	if c.MaxPending <= 0 {
		c.MaxPending = d.MaxPending
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Cache is the relation cache: a Checker over a Backend, filled from a
// Source. It is safe for concurrent use and owns no goroutine.
type Cache struct {
	b    Backend
	src  Source
	cfg  Config
	log  *slog.Logger
	errC prometheus.Counter

	// guard bypasses a failing backend and keeps the invalidations it
	// missed meanwhile.
	guard *cacheguard.Guard[Key]

	hits, misses [numLookupKinds]atomic.Uint64
	errs, lost   atomic.Uint64
}

var _ Checker = (*Cache)(nil)

// New returns a Cache of b filled from src. Both must be non-nil.
func New(b Backend, src Source, cfg Config) *Cache {
	if b == nil || src == nil {
		panic("relcache: New with a nil backend or source")
	}
	cfg = cfg.withDefaults()
	c := &Cache{
		b:    b,
		src:  src,
		cfg:  cfg,
		log:  cfg.Logger.With("component", "relcache", "backend", b.Name()),
		errC: metricErrors.WithLabelValues(b.Name()),
	}
	c.guard = cacheguard.New(cacheguard.Config[Key]{
		Name:       "relcache",
		RetryAfter: cfg.RetryAfter,
		MaxPending: cfg.MaxPending,
		Timeout:    cfg.InvalidateTimeout,
		Flush:      func(ctx context.Context, keys []Key) error { return b.Delete(ctx, keys...) },
		OnError:    func() { c.errs.Add(1); c.errC.Inc() },
		OnLost:     func(n int) { c.lost.Add(uint64(n)); metricLost.Add(float64(n)) },
		Log:        c.log,
		Now:        cfg.Now,
	})
	return c
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	get := func(k int) Counts { return Counts{Hits: c.hits[k].Load(), Misses: c.misses[k].Load()} }
	return Stats{
		Friend:            get(lkFriend),
		Block:             get(lkBlock),
		Member:            get(lkMember),
		BackendErrors:     c.errs.Load(),
		LostInvalidations: c.lost.Load(),
	}
}

func (c *Cache) hit(k int) {
	c.hits[k].Add(1)
	lookupHits[k].Inc()
}

func (c *Cache) miss(k int) {
	c.misses[k].Add(1)
	lookupMisses[k].Inc()
}

// IsFriend reports whether otherID is in userID's friend list.
func (c *Cache) IsFriend(ctx context.Context, userID, otherID int64) (bool, error) {
	v, err := c.lookup(ctx, lkFriend, FriendKey(userID, otherID))
	return v.Found, err
}

// IsBlocked reports whether userID blocked blockedID.
func (c *Cache) IsBlocked(ctx context.Context, userID, blockedID int64) (bool, error) {
	v, err := c.lookup(ctx, lkBlock, BlockKey(userID, blockedID))
	return v.Found, err
}

func (c *Cache) lookup(ctx context.Context, lk int, k Key) (Value, error) {
	if c.usable() {
		r, err := c.b.Get(ctx, k)
		if err == nil {
			if r.Hit {
				c.hit(lk)
				return r.Value, nil
			}
			c.miss(lk)
			v, err := c.load(ctx, k)
			if err != nil {
				c.set(ctx, Item{Key: k, Lease: r.Lease}) // release
				return Value{}, err
			}
			if r.Lease != 0 {
				c.set(ctx, Item{Key: k, Lease: r.Lease, Value: v, TTL: c.ttl(v)})
			}
			return v, nil
		}
		c.backendError(ctx, "get", err)
	}
	c.miss(lk)
	return c.load(ctx, k)
}

// Membership returns userID's membership of groupID with the group's flags.
// On a hit it reads the group entry and the member entry in one backend
// call; the member entry counts only if it was filled under the group
// entry's current generation.
func (c *Cache) Membership(ctx context.Context, groupID, userID int64) (Membership, error) {
	gk, mk := GroupKey(groupID), MemberKey(groupID, userID)
	if !c.usable() {
		c.miss(lkMember)
		return c.loadMembership(ctx, gk, mk)
	}
	gr, mr, err := c.b.Get2(ctx, gk, mk)
	if err != nil {
		c.backendError(ctx, "get", err)
		c.miss(lkMember)
		return c.loadMembership(ctx, gk, mk)
	}
	if gr.Hit {
		gv := gr.Value
		if !gv.Found || gv.Dismissed {
			// No member to read. If the member key was empty (Get2 leased
			// it), record "not a member" under the group's generation so
			// that the next lookup takes no lease.
			c.hit(lkMember)
			c.set(ctx, c.noMember(mk, mr.Lease, gv.Gen))
			return membershipOf(gv, Value{}), nil
		}
		if mr.Hit && mr.Value.Gen == gv.Gen {
			c.hit(lkMember)
			return membershipOf(gv, mr.Value), nil
		}
	}
	c.miss(lkMember)

	// The group entry's fill (or release), then the member's: sent to the
	// backend in one call at the end. An item with TTL 0 releases a lease.
	gv := gr.Value
	var gItem Item
	if !gr.Hit {
		if gv, err = c.load(ctx, gk); err != nil {
			c.set(ctx, Item{Key: gk, Lease: gr.Lease}, Item{Key: mk, Lease: mr.Lease})
			return Membership{}, err
		}
		// The generation is our lease token (never reused for a key), or
		// unknown (0) if another lookup is filling the group entry.
		gv.Gen = gr.Lease
		gItem = Item{Key: gk, Lease: gr.Lease, Value: gv, TTL: c.ttl(gv)}
	}
	if !gv.Found || gv.Dismissed {
		c.set(ctx, gItem, c.noMember(mk, mr.Lease, gv.Gen))
		return membershipOf(gv, Value{}), nil
	}
	mItem := Item{Key: mk, Lease: mr.Lease} // released unless filled
	if gv.Gen != 0 && mr.Hit {
		// Filled under an older generation: take the key over.
		if mItem.Lease, err = c.b.Lease(ctx, mk); err != nil {
			c.backendError(ctx, "lease", err)
			mItem.Lease = 0
		}
	}
	// The generation was observed before the member is read from the
	// store: a group invalidation from now on makes this fill stale.
	mv, err := c.load(ctx, mk)
	if err != nil {
		c.set(ctx, gItem, mItem)
		return Membership{}, err
	}
	if gv.Gen != 0 {
		mv.Gen = gv.Gen
		mItem.Value, mItem.TTL = mv, c.ttl(mv)
	}
	c.set(ctx, gItem, mItem)
	return membershipOf(gv, mv), nil
}

// noMember is the item for a member key leased with lease when the group
// does not exist or is dismissed: "not a member" under generation gen, or
// a release if the generation is unknown.
func (c *Cache) noMember(mk Key, lease, gen uint64) Item {
	if gen == 0 {
		return Item{Key: mk, Lease: lease}
	}
	v := Value{Gen: gen}
	return Item{Key: mk, Lease: lease, Value: v, TTL: c.ttl(v)}
}

// loadMembership answers from the Source alone.
func (c *Cache) loadMembership(ctx context.Context, gk, mk Key) (Membership, error) {
	gv, err := c.load(ctx, gk)
	if err != nil || !gv.Found || gv.Dismissed {
		return membershipOf(gv, Value{}), err
	}
	mv, err := c.load(ctx, mk)
	if err != nil {
		return Membership{}, err
	}
	return membershipOf(gv, mv), nil
}

func membershipOf(g, m Value) Membership {
	if !g.Found {
		return Membership{}
	}
	ms := Membership{GroupExists: true, GroupDismissed: g.Dismissed, GroupMuteAll: g.MuteAll}
	if m.Found && !g.Dismissed {
		ms.IsMember = true
		ms.Role = m.Role
		ms.MutedUntil = fromMillis(m.MutedUntil)
	}
	return ms
}

func toMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// load reads k from the Source.
func (c *Cache) load(ctx context.Context, k Key) (Value, error) {
	switch k.Kind {
	case KindFriend:
		f, err := c.src.Friend(ctx, k.A, k.B)
		if errors.Is(err, store.ErrNotFound) {
			return Value{}, nil
		}
		if err != nil {
			return Value{}, fmt.Errorf("relcache: friend %d/%d: %w", k.A, k.B, err)
		}
		return Value{Found: f != nil && !f.Deleted}, nil
	case KindBlock:
		blocked, err := c.src.IsBlocked(ctx, k.A, k.B)
		if err != nil {
			return Value{}, fmt.Errorf("relcache: block %d/%d: %w", k.A, k.B, err)
		}
		return Value{Found: blocked}, nil
	case KindGroup:
		g, err := c.src.Group(ctx, k.A)
		if errors.Is(err, store.ErrNotFound) || (err == nil && g == nil) {
			return Value{}, nil
		}
		if err != nil {
			return Value{}, fmt.Errorf("relcache: group %d: %w", k.A, err)
		}
		return Value{Found: true, MuteAll: g.MuteAll, Dismissed: g.Dismissed}, nil
	case KindMember:
		m, err := c.src.Member(ctx, k.A, k.B)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (m == nil || m.Deleted)) {
			return Value{}, nil
		}
		if err != nil {
			return Value{}, fmt.Errorf("relcache: member %d/%d: %w", k.A, k.B, err)
		}
		return Value{Found: true, Role: m.Role, MutedUntil: toMillis(m.MutedUntil)}, nil
	}
	return Value{}, fmt.Errorf("relcache: unknown key kind %d", k.Kind)
}

// ttl is the TTL of v, minus up to 10% jitter.
func (c *Cache) ttl(v Value) time.Duration {
	d := c.cfg.TTL
	if !v.Found {
		d = c.cfg.NegativeTTL
	}
	return d - time.Duration(rand.Int64N(int64(d)/10+1))
}

// set fills (or, with TTL 0, releases) keys under their leases, skipping
// items without a lease; a failure only costs a later miss.
func (c *Cache) set(ctx context.Context, items ...Item) {
	n := 0
	for _, it := range items {
		if it.Lease != 0 {
			items[n] = it
			n++
		}
	}
	if n == 0 {
		return
	}
	if err := c.b.Set(ctx, items[:n]...); err != nil {
		c.backendError(ctx, "set", err)
	}
}

// usable reports whether lookups may use the backend.
func (c *Cache) usable() bool { return c.guard.Usable() }

// backendError counts a failed backend call and bypasses the backend for
// RetryAfter. A call that failed because the caller's context ended says
// nothing about the backend and is ignored.
func (c *Cache) backendError(ctx context.Context, op string, err error) {
	if ctx.Err() != nil {
		return
	}
	c.guard.Failed(op, err)
}

// InvalidateFriend drops the friendship lookups in both directions.
func (c *Cache) InvalidateFriend(ctx context.Context, a, b int64) error {
	return c.invalidate(ctx, "friend", FriendKey(a, b), FriendKey(b, a))
}

// InvalidateBlock drops the lookup "did userID block blockedID".
func (c *Cache) InvalidateBlock(ctx context.Context, userID, blockedID int64) error {
	return c.invalidate(ctx, "block", BlockKey(userID, blockedID))
}

// InvalidateMember drops the memberships of userIDs in groupID.
func (c *Cache) InvalidateMember(ctx context.Context, groupID int64, userIDs ...int64) error {
	if len(userIDs) == 0 {
		return nil
	}
	keys := make([]Key, len(userIDs))
	for i, u := range userIDs {
		keys[i] = MemberKey(groupID, u)
	}
	return c.invalidate(ctx, "member", keys...)
}

// InvalidateGroup drops the group's flags and, through its generation,
// every membership of the group: one key is deleted whatever the group's
// size.
func (c *Cache) InvalidateGroup(ctx context.Context, groupID int64) error {
	return c.invalidate(ctx, "group", GroupKey(groupID))
}

func (c *Cache) invalidate(ctx context.Context, kind string, keys ...Key) error {
	metricInvalidations.WithLabelValues(kind).Inc()
	if queued, lost := c.guard.QueueIfDown(keys...); queued {
		return lostErr(lost)
	}
	// The change is committed: the caller going away must not abort this.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.InvalidateTimeout)
	err := c.b.Delete(ctx, keys...)
	cancel()
	if err == nil {
		return nil
	}
	c.backendError(context.Background(), "delete", err)
	return lostErr(c.guard.Queue(keys...))
}

func lostErr(lost int) error {
	if lost == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d keys (pending queue full)", ErrInvalidationLost, lost)
}

package relcache

import (
	"context"
	"time"

	"github.com/goimdev/goim/internal/store"
)

// Checker is what the send path and the relation logic use: the cached
// lookups and their invalidation.
type Checker interface {
	// IsFriend reports whether otherID is in userID's friend list.
	IsFriend(ctx context.Context, userID, otherID int64) (bool, error)
	// IsBlocked reports whether userID blocked blockedID.
	IsBlocked(ctx context.Context, userID, blockedID int64) (bool, error)
	// Membership returns userID's membership of groupID together with the
	// group's flags; GroupExists is false for an unknown group id.
	Membership(ctx context.Context, groupID, userID int64) (Membership, error)
	Invalidator
}

// Invalidator drops cached relations after a change. Logic calls it after
// every committed change (Wrap does it for a store). The error is non-nil
// only when the invalidation was lost (the backend is failing and the
// pending queue is full): the entry may then stay stale until its TTL. An
// invalidation that merely failed is queued and retried before the backend
// is used again, and reports no error.
type Invalidator interface {
	// InvalidateFriend drops the friendship lookups in both directions.
	InvalidateFriend(ctx context.Context, a, b int64) error
	// InvalidateBlock drops the lookup "did userID block blockedID".
	InvalidateBlock(ctx context.Context, userID, blockedID int64) error
	// InvalidateMember drops the memberships of userIDs in groupID.
	InvalidateMember(ctx context.Context, groupID int64, userIDs ...int64) error
	// InvalidateGroup drops the group's flags (mute-all, dismissed,
	// existence) and every membership of the group.
	InvalidateGroup(ctx context.Context, groupID int64) error
}

// Membership is what a send check needs to know about a user in a group.
type Membership struct {
	// GroupExists is false for an unknown group id; every other field is
	// then zero.
	GroupExists bool
	// GroupDismissed: the group was dismissed (it has no members left).
	GroupDismissed bool
	// GroupMuteAll: only admins and the owner may speak.
	GroupMuteAll bool
	// IsMember: the user is a current member. Role and MutedUntil are zero
	// when it is false.
	IsMember bool
	Role     store.Role
	// MutedUntil is when the member's mute ends; zero: not muted. Cached
	// with millisecond precision.
	MutedUntil time.Time
}

// Source is where misses are answered from: the relation store.
// store.Friends, store.Blocks and store.Groups together satisfy it.
type Source interface {
	// Friend returns userID's view of friendID, or store.ErrNotFound.
	Friend(ctx context.Context, userID, friendID int64) (*store.Friend, error)
	// IsBlocked reports whether userID blocked blockedID.
	IsBlocked(ctx context.Context, userID, blockedID int64) (bool, error)
	// Group returns a group (dismissed ones too), or store.ErrNotFound.
	Group(ctx context.Context, id int64) (*store.Group, error)
	// Member returns a membership, or store.ErrNotFound.
	Member(ctx context.Context, groupID, userID int64) (*store.Member, error)
}

// Kind is the kind of a cache key.
type Kind uint8

// Key kinds.
const (
	KindFriend Kind = iota + 1 // A: user, B: friend
	KindBlock                  // A: user, B: blocked user
	KindGroup                  // A: group, B: 0
	KindMember                 // A: group, B: user
)

func (k Kind) String() string {
	switch k {
	case KindFriend:
		return "friend"
	case KindBlock:
		return "block"
	case KindGroup:
		return "group"
	case KindMember:
		return "member"
	}
	return "unknown"
}

// Key identifies a cache entry.
type Key struct {
	Kind Kind
	A, B int64
}

// FriendKey is the key of "is b a friend of a".
func FriendKey(a, b int64) Key { return Key{Kind: KindFriend, A: a, B: b} }

// BlockKey is the key of "did a block b".
func BlockKey(a, b int64) Key { return Key{Kind: KindBlock, A: a, B: b} }

// GroupKey is the key of a group's flags and generation.
func GroupKey(groupID int64) Key { return Key{Kind: KindGroup, A: groupID} }

// MemberKey is the key of userID's membership of groupID.
func MemberKey(groupID, userID int64) Key { return Key{Kind: KindMember, A: groupID, B: userID} }

// Value is a cached lookup result. Which fields matter depends on the kind.
type Value struct {
	// Found: friends, blocked, group exists, is a member.
	Found bool
	// MuteAll and Dismissed are a group's flags.
	MuteAll   bool
	Dismissed bool
	// Role is a member's role.
	Role store.Role
	// MutedUntil is a member's mute end in Unix milliseconds; 0: not muted.
	MutedUntil int64
	// Gen is a group's generation, or for a member the generation of the
	// group entry it was read under. Never 0 in a stored group or member.
	Gen uint64
}

// Result is the answer of a Backend lookup for one key.
type Result struct {
	// Value is the stored value when Hit.
	Value Value
	// Hit: the key holds a value.
	Hit bool
	// Lease, when the key holds no value, is non-zero if this lookup now
	// holds the key's lease (it should fill the key with Set), and zero if
	// another lookup holds it (read the Source, do not fill).
	Lease uint64
}

// Item is one value to store under a lease.
type Item struct {
	Key   Key
	Lease uint64
	Value Value
	TTL   time.Duration // <= 0: release the lease, store nothing
}

// Backend stores entries and leases. Implementations are safe for
// concurrent use; every method is one round trip to a remote backend.
type Backend interface {
	// Name is the backend's metric label: "memory", "redis".
	Name() string
	// Get looks k up. When k holds no value and no live lease, Get installs
	// a new lease on it and returns its token.
	Get(ctx context.Context, k Key) (Result, error)
	// Get2 looks a group key k1 and a member key k2 up in one round trip,
	// leasing each like Get. (Not atomically: the Cache's generation check
	// makes that unnecessary.)
	Get2(ctx context.Context, k1, k2 Key) (r1, r2 Result, err error)
	// Lease installs a new lease on k, replacing the value it holds; it
	// returns 0 if another lookup holds a live lease on k.
	Lease(ctx context.Context, k Key) (uint64, error)
	// Set stores each item's value with its TTL if its key still holds the
	// item's lease, and ignores it otherwise. An item with a TTL <= 0
	// releases its lease instead: the key is deleted if it still holds it.
	// The keys of one call must be a group and members of it (one Redis
	// Cluster hash slot).
	Set(ctx context.Context, items ...Item) error
	// Delete removes keys, values and leases alike.
	Delete(ctx context.Context, keys ...Key) error
}

// Counts are hit and miss counts.
type Counts struct {
	Hits, Misses uint64
}

// Lookups is Hits + Misses.
func (c Counts) Lookups() uint64 { return c.Hits + c.Misses }

// HitRatio is Hits / Lookups, 0 without lookups.
func (c Counts) HitRatio() float64 {
	if n := c.Lookups(); n > 0 {
		return float64(c.Hits) / float64(n)
	}
	return 0
}

// Stats are the counters of one Cache since New.
type Stats struct {
	Friend, Block, Member Counts
	// BackendErrors counts failed backend calls.
	BackendErrors uint64
	// LostInvalidations counts invalidations dropped because the pending
	// queue was full.
	LostInvalidations uint64
}

// Total sums the counts of every kind.
func (s Stats) Total() Counts {
	return Counts{
		Hits:   s.Friend.Hits + s.Block.Hits + s.Member.Hits,
		Misses: s.Friend.Misses + s.Block.Misses + s.Member.Misses,
	}
}

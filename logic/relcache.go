package logic

import (
	"context"
	"time"

	"github.com/goimdev/goim/internal/store"
)

// RelationCache is a cache of the relation lookups the send path makes (is
// friend, is blocked, membership, role, muted until). The service does not
// read it: it tells it, after every committed change, which entries are
// stale. internal/relcache implements it (in-process and Redis).
//
// An Invalidate error is logged and counted
// (goim_logic_cache_invalidate_errors_total); the change itself stands. A
// cache that can fail this way must bound the age of its entries (a TTL) so
// that a lost invalidation heals.
type RelationCache interface {
	// InvalidateFriend drops what is cached about the friendship of a and
	// b, in both directions.
	InvalidateFriend(ctx context.Context, a, b int64) error
	// InvalidateBlock drops whether userID blocked blockedID.
	InvalidateBlock(ctx context.Context, userID, blockedID int64) error
	// InvalidateMember drops the memberships of userIDs in groupID (role,
	// muted until).
	InvalidateMember(ctx context.Context, groupID int64, userIDs ...int64) error
	// InvalidateGroup drops everything cached about groupID: its flags
	// (mute_all, dismissed, existence) and every membership.
	InvalidateGroup(ctx context.Context, groupID int64) error
}

// noCache is the RelationCache of a service without one.
type noCache struct{}

func (noCache) InvalidateFriend(context.Context, int64, int64) error    { return nil }
func (noCache) InvalidateBlock(context.Context, int64, int64) error     { return nil }
func (noCache) InvalidateMember(context.Context, int64, ...int64) error { return nil }
func (noCache) InvalidateGroup(context.Context, int64) error            { return nil }

// relStore is the relation side of the store of record.
type relStore interface {
	store.Friends
	store.Blocks
	store.Groups
}

// sideEffectTimeout bounds the work done after a change is committed
// (cache invalidation, event publishing): it runs even if the client went
// away, since the change is already made.
const sideEffectTimeout = 5 * time.Second

// afterCommit returns a context for post-commit side effects: not canceled
// with the request, bounded by sideEffectTimeout.
func afterCommit(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), sideEffectTimeout)
}

// invalidate runs one cache invalidation and logs its failure.
func (s *Service) invalidate(what string, err error) {
	if err != nil {
		cacheInvalidateErrors.Inc()
		s.log.Error("relation cache invalidation failed: the cache may serve a stale entry until it expires", "what", what, "err", err)
	}
}

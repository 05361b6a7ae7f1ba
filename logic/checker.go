package logic

import (
	"context"
	"errors"

	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/store"
)

// RelationChecker answers the relation lookups of the message path: block
// list, friendship and group membership. internal/relcache's Cache
// implements it with a cache; without one the service asks the store
// (storeChecker).
type RelationChecker interface {
	// IsFriend reports whether otherID is in userID's friend list.
	IsFriend(ctx context.Context, userID, otherID int64) (bool, error)
	// IsBlocked reports whether userID blocked blockedID.
	IsBlocked(ctx context.Context, userID, blockedID int64) (bool, error)
	// Membership returns userID's membership of groupID with the group's
	// flags.
	Membership(ctx context.Context, groupID, userID int64) (relcache.Membership, error)
}

var (
	_ RelationChecker = (*relcache.Cache)(nil)
	_ RelationChecker = storeChecker{}
)

// storeChecker answers RelationChecker from the store of record.
type storeChecker struct{ st store.Store }

func (c storeChecker) IsFriend(ctx context.Context, userID, otherID int64) (bool, error) {
	_, err := c.st.Friend(ctx, userID, otherID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (c storeChecker) IsBlocked(ctx context.Context, userID, blockedID int64) (bool, error) {
	return c.st.IsBlocked(ctx, userID, blockedID)
}

func (c storeChecker) Membership(ctx context.Context, groupID, userID int64) (relcache.Membership, error) {
	g, err := c.st.Group(ctx, groupID)
	if errors.Is(err, store.ErrNotFound) {
		return relcache.Membership{}, nil
	}
	if err != nil {
		return relcache.Membership{}, err
	}
	ms := relcache.Membership{GroupExists: true, GroupDismissed: g.Dismissed, GroupMuteAll: g.MuteAll}
	m, err := c.st.Member(ctx, groupID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return ms, nil
	}
	if err != nil {
		return relcache.Membership{}, err
	}
	ms.IsMember, ms.Role, ms.MutedUntil = true, m.Role, m.MutedUntil
	return ms, nil
}

package relcache

import (
	"context"
	"log/slog"

	"github.com/goimdev/goim/internal/store"
)

// Relations is the part of a store the cache covers.
type Relations interface {
	store.Friends
	store.Blocks
	store.Groups
}

// Wrap returns s with every call that can change a cached relation followed
// by the matching invalidation on inv, so that logic cannot forget one. The
// invalidation runs even when the call fails (a failed commit may still
// have applied) and is not aborted by ctx's cancellation. An invalidation
// error (a lost invalidation, see Invalidator) is logged on logger
// (slog.Default() if nil), not returned: the store change stands.
//
// Covered: ResolveFriendRequest (accepting), DeleteFriend, BlockUser,
// UnblockUser, CreateGroup, UpdateGroup (when MuteAll is set), DismissGroup,
// AddMembers, RemoveMember, UpdateMember, TransferOwnership. The other calls
// pass through; a new store method that changes friendships, blocks,
// memberships, roles, mutes or group flags must be added here.
func Wrap(s Relations, inv Invalidator, logger *slog.Logger) Relations {
	if logger == nil {
		logger = slog.Default()
	}
	w := wrapper{inv: inv, log: logger.With("component", "relcache")}
	return relations{
		Friends: &friendsWrapper{Friends: s, wrapper: w},
		Blocks:  &blocksWrapper{Blocks: s, wrapper: w},
		Groups:  &groupsWrapper{Groups: s, wrapper: w},
	}
}

type relations struct {
	store.Friends
	store.Blocks
	store.Groups
}

type wrapper struct {
	inv Invalidator
	log *slog.Logger
}

func (w wrapper) done(ctx context.Context, what string, err error) {
	if err != nil {
		w.log.ErrorContext(ctx, "relcache: invalidation failed", "what", what, "err", err)
	}
}

type friendsWrapper struct {
	store.Friends
	wrapper
}

func (f *friendsWrapper) ResolveFriendRequest(ctx context.Context, id int64, accept bool) (*store.FriendRequest, error) {
	req, err := f.Friends.ResolveFriendRequest(ctx, id, accept)
	if !accept {
		return req, err // a rejection changes no friendship
	}
	if req == nil {
		// Unknown pair after an error: look the request up to invalidate.
		r, lerr := f.Friends.FriendRequest(context.WithoutCancel(ctx), id)
		if lerr != nil {
			return req, err // no such request: nothing changed
		}
		f.done(ctx, "friend", f.inv.InvalidateFriend(ctx, r.FromUser, r.ToUser))
		return req, err
	}
	f.done(ctx, "friend", f.inv.InvalidateFriend(ctx, req.FromUser, req.ToUser))
	return req, err
}

func (f *friendsWrapper) DeleteFriend(ctx context.Context, userID, friendID int64) error {
	err := f.Friends.DeleteFriend(ctx, userID, friendID)
	f.done(ctx, "friend", f.inv.InvalidateFriend(ctx, userID, friendID))
	return err
}

type blocksWrapper struct {
	store.Blocks
	wrapper
}

func (b *blocksWrapper) BlockUser(ctx context.Context, userID, blockedID int64) error {
	err := b.Blocks.BlockUser(ctx, userID, blockedID)
	b.done(ctx, "block", b.inv.InvalidateBlock(ctx, userID, blockedID))
	return err
}

func (b *blocksWrapper) UnblockUser(ctx context.Context, userID, blockedID int64) error {
	err := b.Blocks.UnblockUser(ctx, userID, blockedID)
	b.done(ctx, "block", b.inv.InvalidateBlock(ctx, userID, blockedID))
	return err
}

type groupsWrapper struct {
	store.Groups
	wrapper
}

// CreateGroup invalidates the new id: a lookup of it before it existed
// cached "no such group".
func (g *groupsWrapper) CreateGroup(ctx context.Context, grp *store.Group, members []int64) (int64, error) {
	id, err := g.Groups.CreateGroup(ctx, grp, members)
	if id != 0 {
		g.done(ctx, "group", g.inv.InvalidateGroup(ctx, id))
	}
	return id, err
}

// UpdateGroup invalidates only when MuteAll changes: the cache holds no
// other field that UpdateGroup can change.
func (g *groupsWrapper) UpdateGroup(ctx context.Context, id int64, u store.GroupUpdate) error {
	err := g.Groups.UpdateGroup(ctx, id, u)
	if u.MuteAll != nil {
		g.done(ctx, "group", g.inv.InvalidateGroup(ctx, id))
	}
	return err
}

func (g *groupsWrapper) DismissGroup(ctx context.Context, id int64) error {
	err := g.Groups.DismissGroup(ctx, id)
	g.done(ctx, "group", g.inv.InvalidateGroup(ctx, id))
	return err
}

// AddMembers invalidates every user asked for, not only those added: on an
// error the added set is unknown.
func (g *groupsWrapper) AddMembers(ctx context.Context, groupID int64, userIDs []int64, role store.Role) ([]int64, error) {
	added, err := g.Groups.AddMembers(ctx, groupID, userIDs, role)
	g.done(ctx, "member", g.inv.InvalidateMember(ctx, groupID, userIDs...))
	return added, err
}

func (g *groupsWrapper) RemoveMember(ctx context.Context, groupID, userID int64) error {
	err := g.Groups.RemoveMember(ctx, groupID, userID)
	g.done(ctx, "member", g.inv.InvalidateMember(ctx, groupID, userID))
	return err
}

func (g *groupsWrapper) UpdateMember(ctx context.Context, groupID, userID int64, u store.MemberUpdate) error {
	err := g.Groups.UpdateMember(ctx, groupID, userID, u)
	g.done(ctx, "member", g.inv.InvalidateMember(ctx, groupID, userID))
	return err
}

// TransferOwnership invalidates the whole group: the old owner is not known
// here without a racy read.
func (g *groupsWrapper) TransferOwnership(ctx context.Context, groupID, newOwner int64) error {
	err := g.Groups.TransferOwnership(ctx, groupID, newOwner)
	g.done(ctx, "group", g.inv.InvalidateGroup(ctx, groupID))
	return err
}

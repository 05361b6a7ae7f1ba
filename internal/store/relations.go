package store

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Relation errors, compared with errors.Is.
var (
	// ErrGroupFull means adding members would exceed the group's max_members.
	ErrGroupFull = errors.New("store: group full")
	// ErrGroupDismissed means the group exists but was dismissed.
	ErrGroupDismissed = errors.New("store: group dismissed")
	// ErrConflict means the change contradicts the current state (e.g.
	// resolving a friend request that is no longer pending).
	ErrConflict = errors.New("store: conflict")
)

// Column limits of the relation tables (bytes).
const (
	MaxRemarkLen       = 255
	MaxRequestMsgLen   = 1024
	MaxGroupNameLen    = 255
	MaxAnnouncementLen = 4096
	MaxMemberNickLen   = 255
)

// FriendRequestStatus is the state of a friend request.
type FriendRequestStatus int

const (
	RequestPending  FriendRequestStatus = 0
	RequestAccepted FriendRequestStatus = 1
	RequestRejected FriendRequestStatus = 2
)

// FriendRequest asks ToUser to become FromUser's friend.
type FriendRequest struct {
	ID        int64
	FromUser  int64
	ToUser    int64
	Message   string
	Status    FriendRequestStatus
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Friend is one direction of a friendship: UserID's view of FriendID.
// Friendships are stored in both directions; each side has its own remark.
type Friend struct {
	UserID    int64
	FriendID  int64
	Remark    string
	Deleted   bool  // a tombstone, returned only by incremental lists
	Version   int64 // UserID's friend-list version at which this row last changed
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Block means UserID blocked BlockedID: messages and friend requests from
// BlockedID to UserID are refused.
type Block struct {
	UserID    int64
	BlockedID int64
	CreatedAt time.Time
}

// Role of a group member.
type Role int

const (
	RoleMember Role = 0
	RoleAdmin  Role = 1
	RoleOwner  Role = 2
)

// Group is a chat group.
type Group struct {
	ID           int64
	OwnerID      int64
	Name         string
	Avatar       string
	Announcement string
	MaxMembers   int
	MuteAll      bool // only admins and the owner may speak
	Dismissed    bool
	MemberCount  int
	Version      int64 // the group's member-list version
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// GroupUpdate changes the non-nil fields of a group.
type GroupUpdate struct {
	Name         *string
	Avatar       *string
	Announcement *string
	MuteAll      *bool
	MaxMembers   *int
}

// Member is a user's membership of a group.
type Member struct {
	GroupID    int64
	UserID     int64
	Role       Role
	Nickname   string
	MutedUntil time.Time // zero: not muted
	Deleted    bool      // a tombstone (left or kicked), only in incremental lists
	Version    int64     // the group's member-list version at which this row last changed
	JoinedAt   time.Time
	UpdatedAt  time.Time
}

// MemberUpdate changes the non-nil fields of a membership.
type MemberUpdate struct {
	Role       *Role
	Nickname   *string
	MutedUntil *time.Time // zero time unmutes
}

// UserGroup is an entry of a user's group list (incremental sync).
type UserGroup struct {
	GroupID int64
	Deleted bool  // the user left, was kicked, or the group was dismissed
	Version int64 // the user's group-list version at which this entry last changed
}

// Changes is the answer to "what changed since version V" for one list.
// When Full is true, Items is the whole current list and has no tombstones:
// V was 0 (or negative), older than the list's oldest version still
// answerable incrementally (tombstones were pruned, see
// Store.PruneTombstones), or newer than the list's current version (a
// client of another database). Otherwise Items are the rows changed after
// V, tombstones included, in version order; none when V is current.
//
// Every change to a list bumps its version once per transaction and stamps
// the rows it changed with the new version.
type Changes[T any] struct {
	Version int64 // the list's current version: ask "since Version" next time
	Full    bool
	Items   []T
}

// Friends stores friendships and friend requests.
type Friends interface {
	// CreateFriendRequest records a pending request from -> to. A pending
	// request in the same direction is merged: its message and UpdatedAt
	// are replaced, its id and CreatedAt kept, merged = true. A pending
	// request in the other direction is left alone. ErrConflict if they are
	// already friends, ErrInvalid if from == to or the message breaks
	// MaxRequestMsgLen, ErrNotFound for an unknown user.
	CreateFriendRequest(ctx context.Context, from, to int64, message string) (req *FriendRequest, merged bool, err error)
	// FriendRequest returns a request by id, or ErrNotFound.
	FriendRequest(ctx context.Context, id int64) (*FriendRequest, error)
	// FriendRequests returns the requests (every status) sent to and by
	// userID, most recently updated first (ties: higher id first), at most
	// limit of each; ErrInvalid if limit <= 0.
	FriendRequests(ctx context.Context, userID int64, limit int) (incoming, outgoing []FriendRequest, err error)
	// ResolveFriendRequest accepts or rejects a pending request. Accepting
	// creates the friendship in both directions in the same transaction
	// (and resolves a pending request in the other direction as accepted).
	// ErrConflict if it is not pending, ErrNotFound for an unknown id.
	ResolveFriendRequest(ctx context.Context, id int64, accept bool) (*FriendRequest, error)
	// Friend returns userID's view of friendID, or ErrNotFound if they are
	// not friends.
	Friend(ctx context.Context, userID, friendID int64) (*Friend, error)
	// FriendChanges lists userID's friends changed since version (0: all;
	// an empty full list for an unknown user).
	FriendChanges(ctx context.Context, userID, since int64) (Changes[Friend], error)
	// SetFriendRemark sets userID's remark of friendID (only userID's
	// side); ErrNotFound if not friends, ErrInvalid beyond MaxRemarkLen.
	SetFriendRemark(ctx context.Context, userID, friendID int64, remark string) error
	// DeleteFriend removes the friendship in both directions (tombstones
	// in both friend lists); ErrNotFound if not friends.
	DeleteFriend(ctx context.Context, userID, friendID int64) error
}

// Blocks stores block lists.
type Blocks interface {
	// BlockUser adds blockedID to userID's block list (idempotent: a
	// second call keeps the first CreatedAt). ErrInvalid if userID ==
	// blockedID, ErrNotFound for an unknown user.
	BlockUser(ctx context.Context, userID, blockedID int64) error
	// UnblockUser removes it (idempotent).
	UnblockUser(ctx context.Context, userID, blockedID int64) error
	// IsBlocked reports whether userID blocked blockedID.
	IsBlocked(ctx context.Context, userID, blockedID int64) (bool, error)
	// BlockList returns userID's block list, newest first (none for an
	// unknown user).
	BlockList(ctx context.Context, userID int64) ([]Block, error)
}

// Groups stores groups and their members.
//
// Every method that changes a dismissed group returns ErrGroupDismissed;
// unknown groups and users are ErrNotFound. The owner is always a member
// with RoleOwner and only TransferOwnership changes who it is.
type Groups interface {
	// CreateGroup inserts g with its owner (role owner) and the initial
	// members (role member; duplicates and the owner are skipped) in one
	// transaction, and returns the group id, also set in g.ID with
	// g.MemberCount, g.Version and the times. ErrGroupFull if they exceed
	// g.MaxMembers, ErrInvalid if g breaks ValidateGroup.
	CreateGroup(ctx context.Context, g *Group, members []int64) (int64, error)
	// Group returns a group (dismissed ones included, with Dismissed set),
	// or ErrNotFound.
	Group(ctx context.Context, id int64) (*Group, error)
	// UpdateGroup changes the non-nil fields; ErrGroupDismissed, ErrNotFound,
	// ErrInvalid (ValidateGroupUpdate), ErrConflict if MaxMembers would be
	// below the current member count. A change bumps every member's group
	// list (the entry reappears in UserGroupChanges: refetch the group).
	UpdateGroup(ctx context.Context, id int64, u GroupUpdate) error
	// DismissGroup marks the group dismissed and removes every member
	// (tombstones in the member list and in every member's group list).
	DismissGroup(ctx context.Context, id int64) error
	// AddMembers adds users as members with role (RoleMember or RoleAdmin,
	// else ErrInvalid); users already members and duplicates are skipped.
	// It returns the users actually added, in the order given. ErrGroupFull
	// if the group would exceed MaxMembers, ErrNotFound (naming the id) for
	// an unknown user; nobody is added then. A former member rejoins with a
	// fresh membership (role as given, no nickname, not muted).
	AddMembers(ctx context.Context, groupID int64, userIDs []int64, role Role) ([]int64, error)
	// RemoveMember removes a member (left or kicked); ErrNotFound if not
	// one, ErrConflict for the owner (transfer or dismiss instead).
	RemoveMember(ctx context.Context, groupID, userID int64) error
	// UpdateMember changes the non-nil fields; ErrNotFound if not a member,
	// ErrInvalid for RoleOwner (use TransferOwnership) or a field breaking
	// ValidateMemberUpdate, ErrConflict for changing the owner's role.
	UpdateMember(ctx context.Context, groupID, userID int64, u MemberUpdate) error
	// TransferOwnership makes newOwner (a member, else ErrNotFound) the
	// owner and the old owner an admin, in one transaction. A no-op when
	// newOwner already owns the group.
	TransferOwnership(ctx context.Context, groupID, newOwner int64) error
	// Member returns a current membership, or ErrNotFound.
	Member(ctx context.Context, groupID, userID int64) (*Member, error)
	// MemberChanges lists a group's members changed since version (0: all,
	// owner first, then admins, then members by join time); ErrNotFound
	// for an unknown group.
	MemberChanges(ctx context.Context, groupID, since int64) (Changes[Member], error)
	// MemberIDs returns the user ids of every current member, ascending;
	// none for a dismissed group, ErrNotFound for an unknown one.
	MemberIDs(ctx context.Context, groupID int64) ([]int64, error)
	// UserGroupChanges lists userID's groups changed since version (0: all
	// current groups; an empty full list for an unknown user).
	UserGroupChanges(ctx context.Context, userID, since int64) (Changes[UserGroup], error)
}

// Tombstones prunes the tombstones of the versioned lists.
type Tombstones interface {
	// PruneTombstones deletes at most limit tombstones (deleted friends,
	// former members, left groups) last changed before the time before,
	// and raises the minimum answerable version of every list it pruned to
	// the highest pruned version, so that asking "since" an older version
	// gets a full list. It returns how many it deleted: call again while it
	// returns limit. ErrInvalid if limit <= 0.
	PruneTombstones(ctx context.Context, before time.Time, limit int) (int, error)
}

// ValidateRequestMessage checks a friend request message; errors wrap ErrInvalid.
func ValidateRequestMessage(msg string) error {
	return checkText("request message", msg, 0, MaxRequestMsgLen)
}

// ValidateRemark checks a friend remark; errors wrap ErrInvalid.
func ValidateRemark(remark string) error {
	return checkText("remark", remark, 0, MaxRemarkLen)
}

// ValidateGroup checks a new group: a name of 1 to MaxGroupNameLen bytes,
// avatar and announcement within their limits, MaxMembers > 0. Errors wrap
// ErrInvalid.
func ValidateGroup(g *Group) error {
	if g == nil {
		return fmt.Errorf("%w: nil group", ErrInvalid)
	}
	return ValidateGroupUpdate(GroupUpdate{Name: &g.Name, Avatar: &g.Avatar, Announcement: &g.Announcement, MaxMembers: &g.MaxMembers})
}

// ValidateGroupUpdate checks the non-nil fields of u as ValidateGroup does.
func ValidateGroupUpdate(u GroupUpdate) error {
	if u.Name != nil {
		if err := checkText("group name", *u.Name, 1, MaxGroupNameLen); err != nil {
			return err
		}
	}
	if u.Avatar != nil {
		if err := checkText("group avatar", *u.Avatar, 0, MaxAvatarLen); err != nil {
			return err
		}
	}
	if u.Announcement != nil {
		if err := checkText("announcement", *u.Announcement, 0, MaxAnnouncementLen); err != nil {
			return err
		}
	}
	if u.MaxMembers != nil && *u.MaxMembers <= 0 {
		return fmt.Errorf("%w: max members %d", ErrInvalid, *u.MaxMembers)
	}
	return nil
}

// ValidateMemberUpdate checks the non-nil fields of u: a role of member or
// admin (ownership moves only by TransferOwnership), a nickname within
// MaxMemberNickLen. Errors wrap ErrInvalid.
func ValidateMemberUpdate(u MemberUpdate) error {
	if u.Role != nil && *u.Role != RoleMember && *u.Role != RoleAdmin {
		return fmt.Errorf("%w: role %d", ErrInvalid, *u.Role)
	}
	if u.Nickname != nil {
		return checkText("member nickname", *u.Nickname, 0, MaxMemberNickLen)
	}
	return nil
}

func checkText(what, s string, minLen, maxLen int) error {
	if len(s) < minLen || len(s) > maxLen || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s length %d or not UTF-8", ErrInvalid, what, len(s))
	}
	return nil
}

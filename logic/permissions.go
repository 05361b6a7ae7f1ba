package logic

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/goimdev/goim/protocol"
)

// Who may do what with relations: ONE table (permissionRules), enforced in
// ONE place (authorize), rendered into docs/permissions.md
// (permissionsMarkdown; a test keeps the file equal to it) and tested row by
// row over HTTP (permissions_test.go). Handlers establish the facts first
// (the group exists and is not dismissed, the users exist, the body is
// valid), compute the actor's and the target's relations (Rel), then call
// authorize; the conditions in a row's note that are not relations (a
// request is pending, the group is not full, ...) are checked by the
// handler after authorize.

// Action is something a user does to a relation object.
type Action string

// Actions, one per kind of change or read.
const (
	ActProfileRead   Action = "profile.read"
	ActProfileUpdate Action = "profile.update"
	ActDevicesList   Action = "devices.list"

	ActFriendRequest Action = "friend.request"
	ActRequestAccept Action = "friend.request.accept"
	ActRequestReject Action = "friend.request.reject"
	ActFriendRemark  Action = "friend.remark"
	ActFriendDelete  Action = "friend.delete"
	ActBlockAdd      Action = "block.add"
	ActBlockRemove   Action = "block.remove"

	ActGroupCreate     Action = "group.create"
	ActGroupRead       Action = "group.read"
	ActGroupUpdate     Action = "group.update"
	ActGroupMaxMembers Action = "group.max_members"
	ActGroupDismiss    Action = "group.dismiss"
	ActGroupMembers    Action = "group.members"
	ActGroupInvite     Action = "group.invite"
	ActGroupJoin       Action = "group.join"
	ActGroupLeave      Action = "group.leave"
	ActGroupKick       Action = "group.kick"
	ActGroupSetRole    Action = "group.set_role"
	ActGroupMute       Action = "group.mute"
	ActGroupNickname   Action = "group.nickname"
	ActGroupTransfer   Action = "group.transfer"
)

// Rel is the relation of the actor, or of the target, to the object of an
// action (see relDocs).
type Rel string

// Relations.
const (
	RelUser      Rel = "user"
	RelSelf      Rel = "self"
	RelStranger  Rel = "stranger"
	RelFriend    Rel = "friend"
	RelNotFriend Rel = "not_friend"
	RelBlocker   Rel = "blocker"
	RelBlocked   Rel = "blocked"
	RelOther     Rel = "other"
	RelRecipient Rel = "recipient"
	RelSender    Rel = "sender"
	RelThird     Rel = "third_party"
	RelOwner     Rel = "owner"
	RelAdmin     Rel = "admin"
	RelMember    Rel = "member"
	RelNonMember Rel = "non_member"
	// RelAny in a rule's target matches every target without a row of its own.
	RelAny Rel = "*"
	// RelNone is the target of an action that has none.
	RelNone Rel = "-"
)

// relDocs explains each relation (docs/permissions.md).
var relDocs = []struct {
	Rel Rel
	Doc string
}{
	{RelUser, "any signed-in user (actor of an action on their own account or lists)"},
	{RelSelf, "the target is the actor"},
	{RelStranger, "another user who is not the actor's friend and has not blocked the actor"},
	{RelFriend, "a user on the actor's friend list"},
	{RelNotFriend, "a user not on the actor's friend list (the actor included)"},
	{RelBlocker, "a user who has blocked the actor (for group.join: the group's owner blocked the actor)"},
	{RelBlocked, "a user the actor has blocked (and who has not blocked the actor)"},
	{RelOther, "another user who has not blocked the actor (group.create, group.invite, group.join) / any other user (block.add, block.remove)"},
	{RelRecipient, "the user a friend request was sent to"},
	{RelSender, "the user who sent a friend request"},
	{RelThird, "anyone else"},
	{RelOwner, "the group's owner (role 2)"},
	{RelAdmin, "a group admin (role 1); as a target: an admin other than the actor"},
	{RelMember, "a plain group member (role 0); as a target: a member other than the actor"},
	{RelNonMember, "a user who is not a member of the group (unknown user ids included)"},
	{RelAny, "any target without a row of its own"},
	{RelNone, "the action has no target"},
}

// Refusal codes that protocol/codes.go does not have.
const (
	codeAlreadyFriends    = "already_friends"
	codeGroupFull         = "group_full"
	codeGroupDismissed    = "group_dismissed"
	codeOwnerMustTransfer = "owner_must_transfer"
)

// actionSpec describes an action: its endpoint and the relations its actor
// and target can have (the domain the rules of the action must cover).
type actionSpec struct {
	Action   Action
	Endpoint string
	Actors   []Rel
	Targets  []Rel // []Rel{RelNone} when the action has no target
	Target   string
}

var (
	groupActors   = []Rel{RelOwner, RelAdmin, RelMember, RelNonMember}
	memberTargets = []Rel{RelSelf, RelOwner, RelAdmin, RelMember, RelNonMember}
	noTarget      = []Rel{RelNone}
)

// actionSpecs lists every action in the order of the table.
var actionSpecs = []actionSpec{
	{ActProfileRead, "GET /api/v1/users/{id}", []Rel{RelUser}, []Rel{RelSelf, RelOther}, "the user"},
	{ActProfileUpdate, "PATCH /api/v1/users/me", []Rel{RelUser}, []Rel{RelSelf}, "the user"},
	{ActDevicesList, "GET /api/v1/users/me/devices", []Rel{RelUser}, []Rel{RelSelf}, "the user"},
	{ActFriendRequest, "POST /api/v1/friends/requests", []Rel{RelUser}, []Rel{RelSelf, RelBlocker, RelBlocked, RelFriend, RelStranger}, "to_user (first match: self, blocker, blocked, friend, stranger)"},
	{ActRequestAccept, "POST /api/v1/friends/requests/{id}/accept", []Rel{RelRecipient, RelSender, RelThird}, []Rel{RelBlocker, RelStranger}, "the request's sender"},
	{ActRequestReject, "POST /api/v1/friends/requests/{id}/reject", []Rel{RelRecipient, RelSender, RelThird}, noTarget, ""},
	{ActFriendRemark, "PATCH /api/v1/friends/{user_id}", []Rel{RelUser}, []Rel{RelFriend, RelNotFriend}, "user_id"},
	{ActFriendDelete, "DELETE /api/v1/friends/{user_id}", []Rel{RelUser}, []Rel{RelFriend, RelNotFriend}, "user_id"},
	{ActBlockAdd, "PUT /api/v1/blocks/{user_id}", []Rel{RelUser}, []Rel{RelSelf, RelOther}, "user_id"},
	{ActBlockRemove, "DELETE /api/v1/blocks/{user_id}", []Rel{RelUser}, []Rel{RelSelf, RelOther}, "user_id"},
	{ActGroupCreate, "POST /api/v1/groups", []Rel{RelUser}, []Rel{RelBlocker, RelOther}, "each initial member"},
	{ActGroupRead, "GET /api/v1/groups/{id}", groupActors, noTarget, ""},
	{ActGroupUpdate, "PATCH /api/v1/groups/{id} (name, avatar, announcement, mute_all)", groupActors, noTarget, ""},
	{ActGroupMaxMembers, "PATCH /api/v1/groups/{id} (max_members)", groupActors, noTarget, ""},
	{ActGroupDismiss, "DELETE /api/v1/groups/{id}", groupActors, noTarget, ""},
	{ActGroupMembers, "GET /api/v1/groups/{id}/members", groupActors, noTarget, ""},
	{ActGroupInvite, "POST /api/v1/groups/{id}/members {\"user_ids\":[...]}", groupActors, []Rel{RelBlocker, RelOther}, "each invitee"},
	{ActGroupJoin, "POST /api/v1/groups/{id}/members (no user_ids)", groupActors, []Rel{RelBlocker, RelOther}, "the group's owner"},
	{ActGroupLeave, "DELETE /api/v1/groups/{id}/members/{own id}", groupActors, noTarget, ""},
	{ActGroupKick, "DELETE /api/v1/groups/{id}/members/{user_id}", groupActors, []Rel{RelOwner, RelAdmin, RelMember, RelNonMember}, "user_id"},
	{ActGroupSetRole, "PATCH /api/v1/groups/{id}/members/{user_id} (role)", groupActors, memberTargets, "user_id"},
	{ActGroupMute, "PATCH /api/v1/groups/{id}/members/{user_id} (muted_until_ms)", groupActors, memberTargets, "user_id"},
	{ActGroupNickname, "PATCH /api/v1/groups/{id}/members/{user_id} (nickname)", groupActors, memberTargets, "user_id"},
	{ActGroupTransfer, "POST /api/v1/groups/{id}/transfer", groupActors, memberTargets, "user_id (the new owner)"},
}

// possible reports whether an actor and a target relation can occur
// together for an action: a group has one owner, so an owner's "owner"
// target is himself, and an owner cannot have blocked himself.
func possible(a Action, actor, target Rel) bool {
	switch {
	case actor == RelOwner && target == RelOwner:
		return false
	case a == ActGroupJoin && actor == RelOwner && target == RelBlocker:
		return false
	}
	return true
}

// rule is one row of the permission table.
type rule struct {
	Action Action
	Actor  Rel
	Target Rel
	Allow  bool
	Status int    // refusal status (0 when Allow)
	Code   string // refusal code ("" when Allow)
	Note   string // further conditions when allowed; the refusal message otherwise
}

func allow(a Action, actor, target Rel, note string) rule {
	return rule{Action: a, Actor: actor, Target: target, Allow: true, Note: note}
}

func deny(a Action, actor, target Rel, status int, code, msg string) rule {
	return rule{Action: a, Actor: actor, Target: target, Status: status, Code: code, Note: msg}
}

func forbid(a Action, actor, target Rel, msg string) rule {
	return deny(a, actor, target, http.StatusForbidden, protocol.CodeForbidden, msg)
}

func notMember(a Action) rule {
	return deny(a, RelNonMember, RelAny, http.StatusForbidden, protocol.CodeNotMember, "only members may do this")
}

func targetNotMember(a Action, actor Rel) rule {
	return deny(a, actor, RelNonMember, http.StatusNotFound, protocol.CodeNotFound, "the target user is not a member of the group")
}

// permissionRules is THE permission table.
var permissionRules = []rule{
	allow(ActProfileRead, RelUser, RelSelf, "the user must exist (404 not_found)"),
	allow(ActProfileRead, RelUser, RelOther, "profiles (username, nickname, avatar) are public to signed-in users"),
	allow(ActProfileUpdate, RelUser, RelSelf, "nickname 1-64 characters, avatar at most 1024 bytes"),
	allow(ActDevicesList, RelUser, RelSelf, "a user sees only their own devices"),

	deny(ActFriendRequest, RelUser, RelSelf, http.StatusBadRequest, protocol.CodeBadRequest, "you cannot send a friend request to yourself"),
	deny(ActFriendRequest, RelUser, RelBlocker, http.StatusForbidden, protocol.CodeBlocked, "this user has blocked you"),
	deny(ActFriendRequest, RelUser, RelBlocked, http.StatusConflict, protocol.CodeConflict, "you have blocked this user: unblock them first"),
	deny(ActFriendRequest, RelUser, RelFriend, http.StatusConflict, codeAlreadyFriends, "you are already friends"),
	allow(ActFriendRequest, RelUser, RelStranger, "to_user must exist (404 not_found); a pending request in the same direction is merged (same request_id, message updated); at most friend_request_limit requests per window (429 rate_limited)"),

	deny(ActRequestAccept, RelRecipient, RelBlocker, http.StatusForbidden, protocol.CodeBlocked, "the sender has since blocked you"),
	allow(ActRequestAccept, RelRecipient, RelStranger, "the request must be pending (409 conflict); the friendship is created in both directions"),
	forbid(ActRequestAccept, RelSender, RelAny, "only the recipient may accept a friend request"),
	forbid(ActRequestAccept, RelThird, RelAny, "only the recipient may accept a friend request"),
	allow(ActRequestReject, RelRecipient, RelAny, "the request must be pending (409 conflict); the sender is not notified"),
	forbid(ActRequestReject, RelSender, RelAny, "only the recipient may reject a friend request"),
	forbid(ActRequestReject, RelThird, RelAny, "only the recipient may reject a friend request"),

	allow(ActFriendRemark, RelUser, RelFriend, "remark at most 64 characters; only the actor's side changes"),
	deny(ActFriendRemark, RelUser, RelNotFriend, http.StatusNotFound, protocol.CodeNotFound, "this user is not your friend"),
	allow(ActFriendDelete, RelUser, RelFriend, "removes the friendship in both directions"),
	deny(ActFriendDelete, RelUser, RelNotFriend, http.StatusNotFound, protocol.CodeNotFound, "this user is not your friend"),

	deny(ActBlockAdd, RelUser, RelSelf, http.StatusBadRequest, protocol.CodeBadRequest, "you cannot block yourself"),
	allow(ActBlockAdd, RelUser, RelOther, "the user must exist (404 not_found); idempotent; the friendship and pending requests are kept, but the blocked user can no longer send the actor friend requests (nor messages) or invite the actor to groups"),
	deny(ActBlockRemove, RelUser, RelSelf, http.StatusBadRequest, protocol.CodeBadRequest, "you cannot block yourself"),
	allow(ActBlockRemove, RelUser, RelOther, "the user must exist (404 not_found); idempotent"),

	deny(ActGroupCreate, RelUser, RelBlocker, http.StatusForbidden, protocol.CodeBlocked, "a user you named as a member has blocked you"),
	allow(ActGroupCreate, RelUser, RelOther, "members must exist (404 not_found); the creator is the owner; name 1-64 characters; max_members at most max_members_ceiling (400) and not below the initial members plus the owner (409 group_full)"),

	allow(ActGroupRead, RelOwner, RelNone, ""),
	allow(ActGroupRead, RelAdmin, RelNone, ""),
	allow(ActGroupRead, RelMember, RelNone, ""),
	allow(ActGroupRead, RelNonMember, RelNone, "a group's info is public to signed-in users, since anyone may join"),

	allow(ActGroupUpdate, RelOwner, RelNone, "name 1-64 characters, announcement at most 1024 characters"),
	allow(ActGroupUpdate, RelAdmin, RelNone, "as for the owner"),
	forbid(ActGroupUpdate, RelMember, RelNone, "only the owner and admins may change the group"),
	notMember(ActGroupUpdate),

	allow(ActGroupMaxMembers, RelOwner, RelNone, "at most max_members_ceiling (400 bad_request), not below the current member count (409 conflict)"),
	forbid(ActGroupMaxMembers, RelAdmin, RelNone, "only the owner may change max_members"),
	forbid(ActGroupMaxMembers, RelMember, RelNone, "only the owner may change max_members"),
	notMember(ActGroupMaxMembers),

	allow(ActGroupDismiss, RelOwner, RelNone, "every member is removed; later requests on the group get 410 group_dismissed"),
	forbid(ActGroupDismiss, RelAdmin, RelNone, "only the owner may dismiss the group"),
	forbid(ActGroupDismiss, RelMember, RelNone, "only the owner may dismiss the group"),
	notMember(ActGroupDismiss),

	allow(ActGroupMembers, RelOwner, RelNone, ""),
	allow(ActGroupMembers, RelAdmin, RelNone, ""),
	allow(ActGroupMembers, RelMember, RelNone, ""),
	notMember(ActGroupMembers),

	deny(ActGroupInvite, RelOwner, RelBlocker, http.StatusForbidden, protocol.CodeBlocked, "an invitee has blocked you"),
	allow(ActGroupInvite, RelOwner, RelOther, "invitees must exist (404 not_found); members already in are skipped; the group must have room for all (409 group_full)"),
	deny(ActGroupInvite, RelAdmin, RelBlocker, http.StatusForbidden, protocol.CodeBlocked, "an invitee has blocked you"),
	allow(ActGroupInvite, RelAdmin, RelOther, "as for the owner"),
	deny(ActGroupInvite, RelMember, RelBlocker, http.StatusForbidden, protocol.CodeBlocked, "an invitee has blocked you"),
	allow(ActGroupInvite, RelMember, RelOther, "as for the owner: every member may invite"),
	notMember(ActGroupInvite),

	allow(ActGroupJoin, RelOwner, RelAny, "already a member: nothing changes"),
	allow(ActGroupJoin, RelAdmin, RelAny, "already a member: nothing changes"),
	allow(ActGroupJoin, RelMember, RelAny, "already a member: nothing changes"),
	deny(ActGroupJoin, RelNonMember, RelBlocker, http.StatusForbidden, protocol.CodeBlocked, "the group's owner has blocked you"),
	allow(ActGroupJoin, RelNonMember, RelOther, "groups are open: anyone who knows the id may join while it has room (409 group_full); a kicked user may rejoin unless the owner blocks them"),

	deny(ActGroupLeave, RelOwner, RelNone, http.StatusConflict, codeOwnerMustTransfer, "the owner must transfer the group (or dismiss it) before leaving"),
	allow(ActGroupLeave, RelAdmin, RelNone, ""),
	allow(ActGroupLeave, RelMember, RelNone, ""),
	notMember(ActGroupLeave),

	allow(ActGroupKick, RelOwner, RelAdmin, ""),
	allow(ActGroupKick, RelOwner, RelMember, ""),
	targetNotMember(ActGroupKick, RelOwner),
	forbid(ActGroupKick, RelAdmin, RelOwner, "admins may kick plain members only"),
	forbid(ActGroupKick, RelAdmin, RelAdmin, "admins may kick plain members only"),
	allow(ActGroupKick, RelAdmin, RelMember, ""),
	targetNotMember(ActGroupKick, RelAdmin),
	forbid(ActGroupKick, RelMember, RelAny, "only the owner and admins may kick"),
	notMember(ActGroupKick),

	forbid(ActGroupSetRole, RelOwner, RelSelf, "the owner's role changes only by transferring the group"),
	allow(ActGroupSetRole, RelOwner, RelAdmin, "role \"admin\" or \"member\" (400 bad_request otherwise)"),
	allow(ActGroupSetRole, RelOwner, RelMember, "role \"admin\" or \"member\" (400 bad_request otherwise)"),
	targetNotMember(ActGroupSetRole, RelOwner),
	forbid(ActGroupSetRole, RelAdmin, RelAny, "only the owner may change roles"),
	forbid(ActGroupSetRole, RelMember, RelAny, "only the owner may change roles"),
	notMember(ActGroupSetRole),

	forbid(ActGroupMute, RelOwner, RelSelf, "you cannot mute yourself"),
	allow(ActGroupMute, RelOwner, RelAdmin, "muted_until_ms: a time in ms since the epoch, 0 unmutes"),
	allow(ActGroupMute, RelOwner, RelMember, "as above"),
	targetNotMember(ActGroupMute, RelOwner),
	forbid(ActGroupMute, RelAdmin, RelSelf, "you cannot mute yourself"),
	forbid(ActGroupMute, RelAdmin, RelOwner, "admins may mute plain members only"),
	forbid(ActGroupMute, RelAdmin, RelAdmin, "admins may mute plain members only"),
	allow(ActGroupMute, RelAdmin, RelMember, "as above"),
	targetNotMember(ActGroupMute, RelAdmin),
	forbid(ActGroupMute, RelMember, RelAny, "only the owner and admins may mute"),
	notMember(ActGroupMute),

	allow(ActGroupNickname, RelOwner, RelSelf, "nickname at most 64 characters, empty clears it"),
	allow(ActGroupNickname, RelOwner, RelAdmin, "as above"),
	allow(ActGroupNickname, RelOwner, RelMember, "as above"),
	targetNotMember(ActGroupNickname, RelOwner),
	allow(ActGroupNickname, RelAdmin, RelSelf, "as above"),
	forbid(ActGroupNickname, RelAdmin, RelOwner, "admins may set the nickname of plain members only"),
	forbid(ActGroupNickname, RelAdmin, RelAdmin, "admins may set the nickname of plain members only"),
	allow(ActGroupNickname, RelAdmin, RelMember, "as above"),
	targetNotMember(ActGroupNickname, RelAdmin),
	allow(ActGroupNickname, RelMember, RelSelf, "as above"),
	forbid(ActGroupNickname, RelMember, RelAny, "members may set their own nickname only"),
	notMember(ActGroupNickname),

	deny(ActGroupTransfer, RelOwner, RelSelf, http.StatusBadRequest, protocol.CodeBadRequest, "you already own the group"),
	allow(ActGroupTransfer, RelOwner, RelAdmin, "the old owner becomes an admin"),
	allow(ActGroupTransfer, RelOwner, RelMember, "the old owner becomes an admin"),
	targetNotMember(ActGroupTransfer, RelOwner),
	forbid(ActGroupTransfer, RelAdmin, RelAny, "only the owner may transfer the group"),
	forbid(ActGroupTransfer, RelMember, RelAny, "only the owner may transfer the group"),
	notMember(ActGroupTransfer),
}

type ruleKey struct {
	Action        Action
	Actor, Target Rel
}

// rules indexes permissionRules.
var rules = func() map[ruleKey]*rule {
	m := make(map[ruleKey]*rule, len(permissionRules))
	for i := range permissionRules {
		r := &permissionRules[i]
		k := ruleKey{r.Action, r.Actor, r.Target}
		if _, dup := m[k]; dup {
			panic(fmt.Sprintf("logic: duplicate permission rule %v", k))
		}
		m[k] = r
	}
	return m
}()

// lookupRule returns the rule for an actor and a target: the row naming
// the target, or else the actor's row with target "*".
func lookupRule(a Action, actor, target Rel) (*rule, bool) {
	if r, ok := rules[ruleKey{a, actor, target}]; ok {
		return r, true
	}
	r, ok := rules[ruleKey{a, actor, RelAny}]
	return r, ok
}

// authorize is the single permission check of the relation API: nil when
// the table allows action for actor on target, otherwise the refusal to
// answer. A combination without a row is refused (403 forbidden); the
// tests prove the table covers every possible combination.
func authorize(a Action, actor, target Rel) error {
	r, ok := lookupRule(a, actor, target)
	if !ok {
		permissionDenials.WithLabelValues(string(a), "no_rule").Inc()
		return &apiError{http.StatusForbidden, protocol.CodeForbidden, fmt.Sprintf("%s is not allowed for %s on %s", a, actor, target)}
	}
	if r.Allow {
		return nil
	}
	permissionDenials.WithLabelValues(string(a), r.Code).Inc()
	return &apiError{r.Status, r.Code, r.Note}
}

// permissionsMarkdown renders the table for docs/permissions.md.
func permissionsMarkdown() string {
	var b strings.Builder
	b.WriteString("| action | endpoint | the target | actor relation | target relation | allowed | refusal | conditions / message |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, spec := range actionSpecs {
		for _, r := range permissionRules {
			if r.Action != spec.Action {
				continue
			}
			allowed, refusal := "yes", ""
			if !r.Allow {
				allowed, refusal = "**no**", fmt.Sprintf("%d `%s`", r.Status, r.Code)
			}
			target := spec.Target
			if target == "" {
				target = "-"
			}
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s | %s | %s | %s |\n",
				r.Action, spec.Endpoint, target, r.Actor, mdEscape(string(r.Target)), allowed, refusal, mdEscape(r.Note))
		}
	}
	b.WriteString("\nRelations:\n\n| relation | meaning |\n|---|---|\n")
	for _, d := range relDocs {
		fmt.Fprintf(&b, "| %s | %s |\n", mdEscape(string(d.Rel)), d.Doc)
	}
	return b.String()
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	if s == "*" {
		return "\\*"
	}
	return s
}

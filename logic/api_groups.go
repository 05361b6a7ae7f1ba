package logic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

const (
	// maxMembersLimit bounds Config.MaxMembersCeiling.
	maxMembersLimit = 100000
	// maxMutedUntilMS is 9999-12-31T23:59:59.999Z: "muted for good".
	maxMutedUntilMS = 253402300799999
)

var (
	errGroupDismissed = &apiError{http.StatusGone, codeGroupDismissed, "the group was dismissed"}
	errGroupFull      = &apiError{http.StatusConflict, codeGroupFull, "the group is full (max_members)"}
	errGroupNotFound  = &apiError{http.StatusNotFound, protocol.CodeNotFound, "group not found"}
)

// Role names on the wire.
const (
	roleOwner  = "owner"
	roleAdmin  = "admin"
	roleMember = "member"
)

func roleName(r store.Role) string {
	switch r {
	case store.RoleOwner:
		return roleOwner
	case store.RoleAdmin:
		return roleAdmin
	}
	return roleMember
}

func roleRel(r store.Role) Rel {
	switch r {
	case store.RoleOwner:
		return RelOwner
	case store.RoleAdmin:
		return RelAdmin
	}
	return RelMember
}

// groupJSON is a group (GET /groups/{id}, and the entries of GET /groups).
type groupJSON struct {
	GroupID        int64  `json:"group_id"`
	Name           string `json:"name,omitempty"`
	Avatar         string `json:"avatar,omitempty"`
	Announcement   string `json:"announcement,omitempty"`
	OwnerID        int64  `json:"owner_id,omitempty"`
	MaxMembers     int    `json:"max_members,omitempty"`
	MuteAll        bool   `json:"mute_all"`
	MemberCount    int    `json:"member_count"`
	MembersVersion int64  `json:"members_version"` // the member list's version
	CreatedAtMS    int64  `json:"created_at_ms,omitempty"`
	UpdatedAtMS    int64  `json:"updated_at_ms,omitempty"`
	Role           string `json:"role,omitempty"`    // the caller's role; absent for non-members
	Version        int64  `json:"version,omitempty"` // GET /groups: the caller's group-list version of this entry
	Deleted        bool   `json:"deleted,omitempty"` // GET /groups: a tombstone (left, kicked or dismissed)
}

func groupOf(g *store.Group) *groupJSON {
	return &groupJSON{
		GroupID:        g.ID,
		Name:           g.Name,
		Avatar:         g.Avatar,
		Announcement:   g.Announcement,
		OwnerID:        g.OwnerID,
		MaxMembers:     g.MaxMembers,
		MuteAll:        g.MuteAll,
		MemberCount:    g.MemberCount,
		MembersVersion: g.Version,
		CreatedAtMS:    g.CreatedAt.UnixMilli(),
		UpdatedAtMS:    g.UpdatedAt.UnixMilli(),
	}
}

// memberJSON is a group member.
type memberJSON struct {
	UserID       int64     `json:"user_id"`
	Role         string    `json:"role,omitempty"`
	Nickname     string    `json:"nickname"`
	MutedUntilMS int64     `json:"muted_until_ms"` // muted while > now; 0 never muted or unmuted
	JoinedAtMS   int64     `json:"joined_at_ms,omitempty"`
	Version      int64     `json:"version"`
	Deleted      bool      `json:"deleted,omitempty"` // a tombstone (incremental lists only)
	User         *userJSON `json:"user,omitempty"`    // the member's profile
}

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func memberOf(m *store.Member) memberJSON {
	mj := memberJSON{UserID: m.UserID, Version: m.Version, Deleted: m.Deleted}
	if !m.Deleted {
		mj.Role = roleName(m.Role)
		mj.Nickname = m.Nickname
		mj.MutedUntilMS = msOrZero(m.MutedUntil)
		mj.JoinedAtMS = msOrZero(m.JoinedAt)
	}
	return mj
}

// loadGroup returns a live group: 404 for an unknown id, 410 for a
// dismissed group.
func (s *Service) loadGroup(ctx context.Context, id int64) (*store.Group, error) {
	g, err := s.rel.Group(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errGroupNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("group lookup: %w", err)
	}
	if g.Dismissed {
		return nil, errGroupDismissed
	}
	return g, nil
}

// membership returns userID's relation to a group (owner, admin, member or
// non_member) and the membership (nil for non-members).
func (s *Service) membership(ctx context.Context, groupID, userID int64) (Rel, *store.Member, error) {
	m, err := s.rel.Member(ctx, groupID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return RelNonMember, nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("member lookup: %w", err)
	}
	return roleRel(m.Role), m, nil
}

// targetRel returns a target member's relation: self when it is the actor,
// otherwise its role (non_member when not a member).
func (s *Service) targetRel(ctx context.Context, groupID, actor, target int64) (Rel, *store.Member, error) {
	rel, m, err := s.membership(ctx, groupID, target)
	if err != nil {
		return "", nil, err
	}
	if target == actor {
		return RelSelf, m, nil
	}
	return rel, m, nil
}

// groupPath loads the group of the {id} path value and the caller's
// relation to it.
func (s *Service) groupPath(r *http.Request) (*store.Group, Rel, *store.Member, error) {
	gid, err := pathID(r, "id")
	if err != nil {
		return nil, "", nil, err
	}
	g, err := s.loadGroup(r.Context(), gid)
	if err != nil {
		return nil, "", nil, err
	}
	rel, m, err := s.membership(r.Context(), gid, me(r))
	if err != nil {
		return nil, "", nil, err
	}
	return g, rel, m, nil
}

// anyBlocked reports whether any of users blocked actor.
func (s *Service) anyBlocked(ctx context.Context, users []int64, actor int64) (bool, error) {
	for _, u := range users {
		b, err := s.rel.IsBlocked(ctx, u, actor)
		if err != nil {
			return false, fmt.Errorf("block lookup: %w", err)
		}
		if b {
			return true, nil
		}
	}
	return false, nil
}

// unknownUsers returns the ids among ids that are not users.
func (s *Service) unknownUsers(ctx context.Context, ids []int64) ([]int64, error) {
	users, err := s.store.UsersByIDs(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("user lookup: %w", err)
	}
	var missing []int64
	for _, id := range ids {
		if users[id] == nil {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

func errUnknownUsers(ids []int64) error {
	return &apiError{http.StatusNotFound, protocol.CodeNotFound, fmt.Sprintf("unknown user ids %v", ids)}
}

// emitGroup sends a group_changed event to every current member and to
// extra (users no longer members who must hear of it). A zero ev.Version
// is filled with the group's member-list version.
func (s *Service) emitGroup(ctx context.Context, groupID int64, ev groupEvent, extra ...int64) {
	ev.Type, ev.GroupID = evGroupChanged, groupID
	if ev.Version == 0 {
		if g, err := s.rel.Group(ctx, groupID); err == nil {
			ev.Version = g.Version
		}
	}
	ids, err := s.rel.MemberIDs(ctx, groupID)
	if err != nil {
		eventErrors.Inc()
		s.log.Warn("group event: member lookup failed, only the users removed hear of it", "group_id", groupID, "change", ev.Change, "err", err)
	}
	s.emit(ctx, evGroupChanged, append(ids, extra...), ev)
}

func validGroupName(s string) bool {
	return strings.TrimSpace(s) != "" && validText(s, maxGroupNameLen, false)
}

type createGroupReq struct {
	Name       string  `json:"name"`
	Avatar     string  `json:"avatar"`
	Members    []int64 `json:"members"`
	MaxMembers *int    `json:"max_members"`
}

type groupIDResp struct {
	GroupID int64 `json:"group_id"`
}

// POST /api/v1/groups {"name", "members", "avatar", "max_members"} -> 201 {"group_id"}
func (s *Service) handleCreateGroup(w http.ResponseWriter, r *http.Request) error {
	var req createGroupReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	ceiling := s.cfg.MaxMembersCeiling
	switch {
	case !validGroupName(req.Name):
		return errBadRequest(fmt.Sprintf("name must be 1-%d characters without control characters", maxGroupNameLen))
	case !validAvatar(req.Avatar):
		return errBadRequest(fmt.Sprintf("avatar must be at most %d bytes of printable text", maxAvatarBytes))
	case len(req.Members) > ceiling:
		return errBadRequest(fmt.Sprintf("at most %d members", ceiling))
	case req.MaxMembers != nil && (*req.MaxMembers < 1 || *req.MaxMembers > ceiling):
		return errBadRequest(fmt.Sprintf("max_members must be 1-%d", ceiling))
	}
	for _, id := range req.Members {
		if id <= 0 {
			return errBadRequest("members must be positive user ids")
		}
	}
	ctx := r.Context()
	uid := me(r)
	members := dedupe(req.Members, uid)
	missing, err := s.unknownUsers(ctx, members)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return errUnknownUsers(missing)
	}
	rel := RelOther
	if blocked, err := s.anyBlocked(ctx, members, uid); err != nil {
		return err
	} else if blocked {
		rel = RelBlocker
	}
	if err := authorize(ActGroupCreate, RelUser, rel); err != nil {
		return err
	}
	maxMembers := s.cfg.DefaultMaxMembers
	if req.MaxMembers != nil {
		maxMembers = *req.MaxMembers
	}
	if len(members)+1 > maxMembers {
		return errGroupFull
	}
	gid, err := s.rel.CreateGroup(ctx, &store.Group{OwnerID: uid, Name: req.Name, Avatar: req.Avatar, MaxMembers: maxMembers}, members)
	if err != nil {
		return storeErr(err, "group")
	}
	relationChanges.WithLabelValues(string(ActGroupCreate)).Inc()
	sctx, cancel := afterCommit(ctx)
	defer cancel()
	// A lookup of the id before it existed may have cached "not a member".
	s.invalidate("group", s.cache.InvalidateGroup(sctx, gid))
	ev := groupEvent{Change: changeCreated, UserIDs: members, By: uid}
	if g, err := s.rel.Group(sctx, gid); err == nil {
		ev.Group, ev.Version = groupOf(g), g.Version
	}
	s.emitGroup(sctx, gid, ev)
	return writeJSON(w, http.StatusCreated, groupIDResp{GroupID: gid})
}

// GET /api/v1/groups/{id} -> the group, with the caller's role
func (s *Service) handleGroup(w http.ResponseWriter, r *http.Request) error {
	g, rel, m, err := s.groupPath(r)
	if err != nil {
		return err
	}
	if err := authorize(ActGroupRead, rel, RelNone); err != nil {
		return err
	}
	gj := groupOf(g)
	if m != nil {
		gj.Role = roleName(m.Role)
	}
	return writeJSON(w, http.StatusOK, gj)
}

type groupsResp struct {
	Groups  []*groupJSON `json:"groups"`
	Version int64        `json:"version"`
	Full    bool         `json:"full"`
}

// GET /api/v1/groups?since_version=V -> {"groups", "version", "full"}
func (s *Service) handleGroups(w http.ResponseWriter, r *http.Request) error {
	since, err := queryInt(r, "since_version", 0)
	if err != nil {
		return err
	}
	ctx := r.Context()
	uid := me(r)
	ch, err := s.rel.UserGroupChanges(ctx, uid, since)
	if err != nil {
		return fmt.Errorf("groups: %w", err)
	}
	resp := groupsResp{Groups: make([]*groupJSON, 0, len(ch.Items)), Version: ch.Version, Full: ch.Full}
	for _, ug := range ch.Items {
		gj, err := s.groupEntry(ctx, ug, uid)
		if err != nil {
			return err
		}
		if gj == nil {
			continue // gone between the two reads; a full list omits it
		}
		resp.Groups = append(resp.Groups, gj)
	}
	return writeJSON(w, http.StatusOK, resp)
}

// groupEntry is one entry of a user's group list: the group with the
// user's role, or a tombstone. It returns nil for a live entry whose group
// or membership vanished meanwhile in a full list (in an incremental list
// it becomes a tombstone).
func (s *Service) groupEntry(ctx context.Context, ug store.UserGroup, uid int64) (*groupJSON, error) {
	tomb := &groupJSON{GroupID: ug.GroupID, Version: ug.Version, Deleted: true}
	if ug.Deleted {
		return tomb, nil
	}
	g, err := s.rel.Group(ctx, ug.GroupID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("groups: %w", err)
	}
	var m *store.Member
	if err == nil && !g.Dismissed {
		m, err = s.rel.Member(ctx, ug.GroupID, uid)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("groups: %w", err)
		}
	}
	if m == nil {
		return tomb, nil
	}
	gj := groupOf(g)
	gj.Role, gj.Version = roleName(m.Role), ug.Version
	return gj, nil
}

type updateGroupReq struct {
	Name         *string `json:"name"`
	Avatar       *string `json:"avatar"`
	Announcement *string `json:"announcement"`
	MuteAll      *bool   `json:"mute_all"`
	MaxMembers   *int    `json:"max_members"`
}

// PATCH /api/v1/groups/{id} {"name", "avatar", "announcement", "mute_all", "max_members"} -> the group
func (s *Service) handleUpdateGroup(w http.ResponseWriter, r *http.Request) error {
	var req updateGroupReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	ceiling := s.cfg.MaxMembersCeiling
	switch {
	case req.Name == nil && req.Avatar == nil && req.Announcement == nil && req.MuteAll == nil && req.MaxMembers == nil:
		return errBadRequest("nothing to change: give name, avatar, announcement, mute_all and/or max_members")
	case req.Name != nil && !validGroupName(*req.Name):
		return errBadRequest(fmt.Sprintf("name must be 1-%d characters without control characters", maxGroupNameLen))
	case req.Avatar != nil && !validAvatar(*req.Avatar):
		return errBadRequest(fmt.Sprintf("avatar must be at most %d bytes of printable text", maxAvatarBytes))
	case req.Announcement != nil && !validText(*req.Announcement, maxAnnouncementLen, true):
		return errBadRequest(fmt.Sprintf("announcement must be at most %d characters", maxAnnouncementLen))
	case req.MaxMembers != nil && (*req.MaxMembers < 1 || *req.MaxMembers > ceiling):
		return errBadRequest(fmt.Sprintf("max_members must be 1-%d", ceiling))
	}
	g, rel, _, err := s.groupPath(r)
	if err != nil {
		return err
	}
	if req.Name != nil || req.Avatar != nil || req.Announcement != nil || req.MuteAll != nil {
		if err := authorize(ActGroupUpdate, rel, RelNone); err != nil {
			return err
		}
	}
	if req.MaxMembers != nil {
		if err := authorize(ActGroupMaxMembers, rel, RelNone); err != nil {
			return err
		}
		if *req.MaxMembers < g.MemberCount {
			return &apiError{http.StatusConflict, protocol.CodeConflict, fmt.Sprintf("max_members below the %d current members", g.MemberCount)}
		}
	}
	ctx := r.Context()
	if err := s.rel.UpdateGroup(ctx, g.ID, store.GroupUpdate{Name: req.Name, Avatar: req.Avatar, Announcement: req.Announcement, MuteAll: req.MuteAll, MaxMembers: req.MaxMembers}); err != nil {
		return storeErr(err, "group")
	}
	if req.Name != nil || req.Avatar != nil || req.Announcement != nil || req.MuteAll != nil {
		relationChanges.WithLabelValues(string(ActGroupUpdate)).Inc()
	}
	if req.MaxMembers != nil {
		relationChanges.WithLabelValues(string(ActGroupMaxMembers)).Inc()
	}
	sctx, cancel := afterCommit(ctx)
	defer cancel()
	s.invalidate("group", s.cache.InvalidateGroup(sctx, g.ID))
	ng, err := s.rel.Group(ctx, g.ID)
	if err != nil {
		return storeErr(err, "group")
	}
	uid := me(r)
	if req.Announcement != nil {
		s.emitGroup(sctx, g.ID, groupEvent{Change: changeAnnouncement, By: uid, Version: ng.Version, Announcement: req.Announcement})
	}
	var fields []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"name", req.Name != nil}, {"avatar", req.Avatar != nil}, {"mute_all", req.MuteAll != nil}, {"max_members", req.MaxMembers != nil}} {
		if f.set {
			fields = append(fields, f.name)
		}
	}
	if len(fields) > 0 {
		s.emitGroup(sctx, g.ID, groupEvent{Change: changeUpdated, By: uid, Version: ng.Version, Fields: fields, Group: groupOf(ng)})
	}
	gj := groupOf(ng)
	if m, err := s.rel.Member(ctx, g.ID, uid); err == nil {
		gj.Role = roleName(m.Role)
	}
	return writeJSON(w, http.StatusOK, gj)
}

// DELETE /api/v1/groups/{id} -> 204 (dismiss)
func (s *Service) handleDismissGroup(w http.ResponseWriter, r *http.Request) error {
	g, rel, _, err := s.groupPath(r)
	if err != nil {
		return err
	}
	if err := authorize(ActGroupDismiss, rel, RelNone); err != nil {
		return err
	}
	ctx := r.Context()
	members, err := s.rel.MemberIDs(ctx, g.ID)
	if err != nil {
		return fmt.Errorf("dismiss: %w", err)
	}
	if err := s.rel.DismissGroup(ctx, g.ID); err != nil {
		return storeErr(err, "group")
	}
	relationChanges.WithLabelValues(string(ActGroupDismiss)).Inc()
	sctx, cancel := afterCommit(ctx)
	defer cancel()
	s.invalidate("group", s.cache.InvalidateGroup(sctx, g.ID))
	s.emitGroup(sctx, g.ID, groupEvent{Change: changeDismissed, By: me(r)}, members...)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type membersResp struct {
	Members []memberJSON `json:"members"`
	Version int64        `json:"version"`
	Full    bool         `json:"full"`
}

// GET /api/v1/groups/{id}/members?since_version=V -> {"members", "version", "full"}
func (s *Service) handleMembers(w http.ResponseWriter, r *http.Request) error {
	since, err := queryInt(r, "since_version", 0)
	if err != nil {
		return err
	}
	g, rel, _, err := s.groupPath(r)
	if err != nil {
		return err
	}
	if err := authorize(ActGroupMembers, rel, RelNone); err != nil {
		return err
	}
	ctx := r.Context()
	ch, err := s.rel.MemberChanges(ctx, g.ID, since)
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	ids := make([]int64, 0, len(ch.Items))
	for _, m := range ch.Items {
		if !m.Deleted {
			ids = append(ids, m.UserID)
		}
	}
	users, err := s.store.UsersByIDs(ctx, ids)
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	resp := membersResp{Members: make([]memberJSON, len(ch.Items)), Version: ch.Version, Full: ch.Full}
	for i := range ch.Items {
		mj := memberOf(&ch.Items[i])
		if !mj.Deleted {
			mj.User = shortProfile(users[mj.UserID])
		}
		resp.Members[i] = mj
	}
	return writeJSON(w, http.StatusOK, resp)
}

type inviteReq struct {
	UserIDs []int64 `json:"user_ids"`
}

type addMembersResp struct {
	UserIDs []int64 `json:"user_ids"` // the users actually added
	Version int64   `json:"version"`  // the member list's version after the change
}

// POST /api/v1/groups/{id}/members {"user_ids": [...]} invites; an empty
// body, {} or an empty list joins the caller. -> {"user_ids", "version"}
func (s *Service) handleAddMembers(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req inviteReq
	if body = bytes.TrimSpace(body); len(body) > 0 {
		if body[0] != '{' {
			return errBadRequest("request body must be a JSON object")
		}
		if err := sonic.Unmarshal(body, &req); err != nil {
			return errBadRequest("invalid JSON: " + err.Error())
		}
	}
	if len(req.UserIDs) > s.cfg.MaxMembersCeiling {
		return errBadRequest(fmt.Sprintf("at most %d user_ids", s.cfg.MaxMembersCeiling))
	}
	for _, id := range req.UserIDs {
		if id <= 0 {
			return errBadRequest("user_ids must be positive user ids")
		}
	}
	g, rel, _, err := s.groupPath(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	uid := me(r)
	action, invitees := ActGroupInvite, dedupe(req.UserIDs, 0)
	var missing []int64
	target := RelOther
	if len(invitees) == 0 {
		action, invitees = ActGroupJoin, []int64{uid}
		if blocked, err := s.rel.IsBlocked(ctx, g.OwnerID, uid); err != nil {
			return fmt.Errorf("join: %w", err)
		} else if blocked && g.OwnerID != uid {
			target = RelBlocker
		}
	} else if rel != RelNonMember {
		// Facts about the invitees matter only to members (a non-member is
		// refused whoever they invite).
		if missing, err = s.unknownUsers(ctx, invitees); err != nil {
			return err
		}
		if blocked, err := s.anyBlocked(ctx, invitees, uid); err != nil {
			return err
		} else if blocked {
			target = RelBlocker
		}
	}
	if err := authorize(action, rel, target); err != nil {
		return err
	}
	if len(missing) > 0 {
		return errUnknownUsers(missing)
	}
	if action == ActGroupJoin && rel != RelNonMember {
		return writeJSON(w, http.StatusOK, addMembersResp{UserIDs: []int64{}, Version: g.Version})
	}
	added, err := s.rel.AddMembers(ctx, g.ID, invitees, store.RoleMember)
	if err != nil {
		return storeErr(err, "group")
	}
	if added == nil {
		added = []int64{}
	}
	relationChanges.WithLabelValues(string(action)).Inc()
	sctx, cancel := afterCommit(ctx)
	defer cancel()
	s.invalidate("member", s.cache.InvalidateMember(sctx, g.ID, added...))
	version := g.Version
	if ng, err := s.rel.Group(sctx, g.ID); err == nil {
		version = ng.Version
	}
	if len(added) > 0 {
		s.emitGroup(sctx, g.ID, groupEvent{Change: changeMemberJoined, UserIDs: added, By: uid, Version: version})
	}
	return writeJSON(w, http.StatusOK, addMembersResp{UserIDs: added, Version: version})
}

// DELETE /api/v1/groups/{id}/members/{user_id} -> 204: kick, or leave when
// user_id is the caller
func (s *Service) handleRemoveMember(w http.ResponseWriter, r *http.Request) error {
	target, err := pathID(r, "user_id")
	if err != nil {
		return err
	}
	g, rel, _, err := s.groupPath(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	uid := me(r)
	action, change := ActGroupLeave, changeMemberLeft
	if target == uid {
		err = authorize(ActGroupLeave, rel, RelNone)
	} else {
		action, change = ActGroupKick, changeMemberKicked
		trel, _, terr := s.targetRel(ctx, g.ID, uid, target)
		if terr != nil {
			return terr
		}
		err = authorize(ActGroupKick, rel, trel)
	}
	if err != nil {
		return err
	}
	if err := s.rel.RemoveMember(ctx, g.ID, target); err != nil {
		return storeErr(err, "member")
	}
	relationChanges.WithLabelValues(string(action)).Inc()
	sctx, cancel := afterCommit(ctx)
	defer cancel()
	s.invalidate("member", s.cache.InvalidateMember(sctx, g.ID, target))
	s.emitGroup(sctx, g.ID, groupEvent{Change: change, UserIDs: []int64{target}, By: uid}, target)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type updateMemberReq struct {
	Role         *string `json:"role"`
	MutedUntilMS *int64  `json:"muted_until_ms"`
	Nickname     *string `json:"nickname"`
}

// PATCH /api/v1/groups/{id}/members/{user_id} {"role", "muted_until_ms", "nickname"} -> the member
func (s *Service) handleUpdateMember(w http.ResponseWriter, r *http.Request) error {
	target, err := pathID(r, "user_id")
	if err != nil {
		return err
	}
	var req updateMemberReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	var role store.Role
	switch {
	case req.Role == nil && req.MutedUntilMS == nil && req.Nickname == nil:
		return errBadRequest("nothing to change: give role, muted_until_ms and/or nickname")
	case req.MutedUntilMS != nil && (*req.MutedUntilMS < 0 || *req.MutedUntilMS > maxMutedUntilMS):
		return errBadRequest("muted_until_ms must be 0 (unmute) or a time in ms since the epoch before year 10000")
	case req.Nickname != nil && !validText(*req.Nickname, maxMemberNickLen, false):
		return errBadRequest(fmt.Sprintf("nickname must be at most %d characters without control characters", maxMemberNickLen))
	}
	if req.Role != nil {
		switch *req.Role {
		case roleAdmin:
			role = store.RoleAdmin
		case roleMember:
			role = store.RoleMember
		default:
			return errBadRequest(`role must be "admin" or "member" (ownership moves by POST /api/v1/groups/{id}/transfer)`)
		}
	}
	g, rel, _, err := s.groupPath(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	uid := me(r)
	trel, before, err := s.targetRel(ctx, g.ID, uid, target)
	if err != nil {
		return err
	}
	var upd store.MemberUpdate
	if req.Role != nil {
		if err := authorize(ActGroupSetRole, rel, trel); err != nil {
			return err
		}
		upd.Role = &role
	}
	if req.MutedUntilMS != nil {
		if err := authorize(ActGroupMute, rel, trel); err != nil {
			return err
		}
		var until time.Time
		if *req.MutedUntilMS > 0 {
			until = time.UnixMilli(*req.MutedUntilMS)
		}
		upd.MutedUntil = &until
	}
	if req.Nickname != nil {
		if err := authorize(ActGroupNickname, rel, trel); err != nil {
			return err
		}
		upd.Nickname = req.Nickname
	}
	if err := s.rel.UpdateMember(ctx, g.ID, target, upd); err != nil {
		return storeErr(err, "member")
	}
	sctx, cancel := afterCommit(ctx)
	defer cancel()
	s.invalidate("member", s.cache.InvalidateMember(sctx, g.ID, target))
	version := g.Version
	if ng, err := s.rel.Group(sctx, g.ID); err == nil {
		version = ng.Version
	}
	who := []int64{target}
	if req.Role != nil {
		relationChanges.WithLabelValues(string(ActGroupSetRole)).Inc()
		if before == nil || before.Role != role {
			s.emitGroup(sctx, g.ID, groupEvent{Change: changeRoleChanged, UserIDs: who, By: uid, Version: version, Role: roleName(role)})
		}
	}
	if req.MutedUntilMS != nil {
		relationChanges.WithLabelValues(string(ActGroupMute)).Inc()
		ev := groupEvent{Change: changeUnmuted, UserIDs: who, By: uid, Version: version}
		if *req.MutedUntilMS > s.now().UnixMilli() {
			ev.Change, ev.MutedUntilMS = changeMuted, *req.MutedUntilMS
		}
		s.emitGroup(sctx, g.ID, ev)
	}
	if req.Nickname != nil {
		relationChanges.WithLabelValues(string(ActGroupNickname)).Inc()
		s.emitGroup(sctx, g.ID, groupEvent{Change: changeNickname, UserIDs: who, By: uid, Version: version, Nickname: req.Nickname})
	}
	m, err := s.rel.Member(ctx, g.ID, target)
	if err != nil {
		return storeErr(err, "member")
	}
	return writeJSON(w, http.StatusOK, memberOf(m))
}

type transferReq struct {
	UserID int64 `json:"user_id"`
}

// POST /api/v1/groups/{id}/transfer {"user_id"} -> the group
func (s *Service) handleTransferGroup(w http.ResponseWriter, r *http.Request) error {
	var req transferReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.UserID <= 0 {
		return errBadRequest("user_id must be a positive user id")
	}
	g, rel, _, err := s.groupPath(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	uid := me(r)
	trel, _, err := s.targetRel(ctx, g.ID, uid, req.UserID)
	if err != nil {
		return err
	}
	if err := authorize(ActGroupTransfer, rel, trel); err != nil {
		return err
	}
	if err := s.rel.TransferOwnership(ctx, g.ID, req.UserID); err != nil {
		return storeErr(err, "member")
	}
	relationChanges.WithLabelValues(string(ActGroupTransfer)).Inc()
	sctx, cancel := afterCommit(ctx)
	defer cancel()
	s.invalidate("group", s.cache.InvalidateGroup(sctx, g.ID))
	ng, err := s.rel.Group(ctx, g.ID)
	if err != nil {
		return storeErr(err, "group")
	}
	s.emitGroup(sctx, g.ID, groupEvent{Change: changeOwnerTransferred, UserIDs: []int64{req.UserID}, By: uid, Version: ng.Version, Group: groupOf(ng)})
	gj := groupOf(ng)
	gj.Role = roleAdmin
	return writeJSON(w, http.StatusOK, gj)
}

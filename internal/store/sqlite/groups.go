package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/goimdev/goim/internal/store"
)

const groupCols = "id, owner_id, name, avatar, announcement, max_members, mute_all, status, member_count, version, created_at, updated_at"

func scanGroup(r rowScanner) (*store.Group, error) {
	var g store.Group
	var status int
	var created, updated int64
	if err := r.Scan(&g.ID, &g.OwnerID, &g.Name, &g.Avatar, &g.Announcement, &g.MaxMembers, &g.MuteAll,
		&status, &g.MemberCount, &g.Version, &created, &updated); err != nil {
		return nil, err
	}
	g.Dismissed = status == statusDeleted
	g.CreatedAt, g.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	return &g, nil
}

const memberCols = "group_id, user_id, role, nickname, muted_until, status, version, joined_at, updated_at"

func scanMember(r rowScanner) (store.Member, error) {
	var m store.Member
	var status int
	var muted, joined, updated int64
	if err := r.Scan(&m.GroupID, &m.UserID, &m.Role, &m.Nickname, &muted, &status, &m.Version, &joined, &updated); err != nil {
		return m, err
	}
	m.Deleted = status == statusDeleted
	m.MutedUntil = timeMS(muted)
	m.JoinedAt, m.UpdatedAt = time.UnixMilli(joined), time.UnixMilli(updated)
	return m, nil
}

func scanUserGroup(r rowScanner) (store.UserGroup, error) {
	var ug store.UserGroup
	var status int
	if err := r.Scan(&ug.GroupID, &status, &ug.Version); err != nil {
		return ug, err
	}
	ug.Deleted = status == statusDeleted
	return ug, nil
}

// groupState is what the write paths check before changing a group.
type groupState struct {
	owner       int64
	maxMembers  int
	memberCount int
}

// liveGroup reads a group for a change: ErrNotFound, ErrGroupDismissed.
func liveGroup(ctx context.Context, tx *sql.Tx, id int64) (groupState, error) {
	var g groupState
	var status int
	err := tx.QueryRowContext(ctx, "SELECT owner_id, max_members, member_count, status FROM groups WHERE id = ?", id).
		Scan(&g.owner, &g.maxMembers, &g.memberCount, &status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return g, fmt.Errorf("%w: group %d", store.ErrNotFound, id)
	case err != nil:
		return g, err
	case status == statusDeleted:
		return g, fmt.Errorf("%w: group %d", store.ErrGroupDismissed, id)
	}
	return g, nil
}

// liveMember returns a current member's role, or ErrNotFound.
func liveMember(ctx context.Context, tx *sql.Tx, groupID, userID int64) (store.Role, error) {
	var role store.Role
	err := tx.QueryRowContext(ctx, "SELECT role FROM group_members WHERE group_id = ? AND user_id = ? AND status = 0",
		groupID, userID).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: user %d is not a member of group %d", store.ErrNotFound, userID, groupID)
	}
	return role, err
}

// bumpMembers increments a group's member-list version and returns it.
func bumpMembers(ctx context.Context, tx *sql.Tx, groupID, now int64) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, "UPDATE groups SET version = version + 1, updated_at = ? WHERE id = ? RETURNING version",
		now, groupID).Scan(&v)
	return v, err
}

// joinGroup adds users (not current members, known to exist) to a group
// whose member-list version is already bumped to v: their membership rows
// and an entry in each one's group list.
func joinGroup(ctx context.Context, tx *sql.Tx, groupID int64, users []int64, roles func(int64) store.Role, v, now int64) error {
	member, err := tx.PrepareContext(ctx,
		`INSERT INTO group_members (group_id, user_id, role, nickname, muted_until, status, version, joined_at, updated_at)
		 VALUES (?, ?, ?, '', 0, 0, ?, ?, ?)
		 ON CONFLICT (group_id, user_id) DO UPDATE SET role = excluded.role, nickname = '', muted_until = 0, status = 0,
		 version = excluded.version, joined_at = excluded.joined_at, updated_at = excluded.updated_at`)
	if err != nil {
		return err
	}
	defer member.Close()
	entry, err := tx.PrepareContext(ctx,
		`INSERT INTO user_groups (user_id, group_id, status, version, updated_at) VALUES (?, ?, 0, ?, ?)
		 ON CONFLICT (user_id, group_id) DO UPDATE SET status = 0, version = excluded.version, updated_at = excluded.updated_at`)
	if err != nil {
		return err
	}
	defer entry.Close()
	for _, u := range users {
		if _, err := member.ExecContext(ctx, groupID, u, roles(u), v, now, now); err != nil {
			return err
		}
		gv, err := bumpList(ctx, tx, kindGroups, u)
		if err != nil {
			return err
		}
		if _, err := entry.ExecContext(ctx, u, groupID, gv, now); err != nil {
			return err
		}
	}
	return nil
}

// touchMemberLists bumps the group list of every current member of a group
// and stamps their entry for it, setting its status.
func touchMemberLists(ctx context.Context, tx *sql.Tx, groupID int64, status int, now int64) error {
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO list_versions (kind, owner_id, version)
		 SELECT ?, user_id, 1 FROM user_groups WHERE group_id = ? AND status = 0
		 ON CONFLICT (kind, owner_id) DO UPDATE SET version = version + 1`, kindGroups, groupID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx,
		`UPDATE user_groups SET status = ?, updated_at = ?,
		 version = (SELECT lv.version FROM list_versions lv WHERE lv.kind = ? AND lv.owner_id = user_groups.user_id)
		 WHERE group_id = ? AND status = 0`, status, now, kindGroups, groupID)
	return err
}

// CreateGroup implements store.Groups.
func (s *Store) CreateGroup(ctx context.Context, g *store.Group, members []int64) (int64, error) {
	if err := store.ValidateGroup(g); err != nil {
		return 0, err
	}
	others := uniqueInOrder(members, g.OwnerID)
	if 1+len(others) > g.MaxMembers {
		return 0, fmt.Errorf("%w: %d members, at most %d", store.ErrGroupFull, 1+len(others), g.MaxMembers)
	}
	all := append([]int64{g.OwnerID}, others...)
	now := nowMS()
	var id int64
	err := s.write(ctx, "create group", func(tx *sql.Tx) error {
		if err := checkUsers(ctx, tx, all); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx,
			`INSERT INTO groups (owner_id, name, avatar, announcement, max_members, mute_all, status, member_count,
			 version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, 1, ?, ?) RETURNING id`,
			g.OwnerID, g.Name, g.Avatar, g.Announcement, g.MaxMembers, g.MuteAll, len(all), now, now).Scan(&id)
		if err != nil {
			return err
		}
		role := func(u int64) store.Role {
			if u == g.OwnerID {
				return store.RoleOwner
			}
			return store.RoleMember
		}
		return joinGroup(ctx, tx, id, all, role, 1, now)
	})
	if err != nil {
		return 0, err
	}
	g.ID, g.MemberCount, g.Version, g.Dismissed = id, len(all), 1, false
	g.CreatedAt, g.UpdatedAt = time.UnixMilli(now), time.UnixMilli(now)
	return id, nil
}

// Group implements store.Groups.
func (s *Store) Group(ctx context.Context, id int64) (*store.Group, error) {
	g, err := scanGroup(s.r.QueryRowContext(ctx, "SELECT "+groupCols+" FROM groups WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: group %d", store.ErrNotFound, id)
	}
	if err != nil {
		return nil, wrap("group", err)
	}
	return g, nil
}

// UpdateGroup implements store.Groups.
func (s *Store) UpdateGroup(ctx context.Context, id int64, u store.GroupUpdate) error {
	if err := store.ValidateGroupUpdate(u); err != nil {
		return err
	}
	return s.write(ctx, "update group", func(tx *sql.Tx) error {
		g, err := liveGroup(ctx, tx, id)
		if err != nil {
			return err
		}
		if u.MaxMembers != nil && *u.MaxMembers < g.memberCount {
			return fmt.Errorf("%w: max members %d below the %d members", store.ErrConflict, *u.MaxMembers, g.memberCount)
		}
		now := nowMS()
		sets := []string{"updated_at = ?"}
		args := []any{now}
		set := func(col string, v any) {
			sets = append(sets, col+" = ?")
			args = append(args, v)
		}
		if u.Name != nil {
			set("name", *u.Name)
		}
		if u.Avatar != nil {
			set("avatar", *u.Avatar)
		}
		if u.Announcement != nil {
			set("announcement", *u.Announcement)
		}
		if u.MuteAll != nil {
			set("mute_all", *u.MuteAll)
		}
		if u.MaxMembers != nil {
			set("max_members", *u.MaxMembers)
		}
		if len(sets) == 1 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE groups SET "+strings.Join(sets, ", ")+" WHERE id = ?",
			append(args, id)...); err != nil {
			return err
		}
		return touchMemberLists(ctx, tx, id, statusLive, now)
	})
}

// DismissGroup implements store.Groups.
func (s *Store) DismissGroup(ctx context.Context, id int64) error {
	return s.write(ctx, "dismiss group", func(tx *sql.Tx) error {
		if _, err := liveGroup(ctx, tx, id); err != nil {
			return err
		}
		now := nowMS()
		if err := touchMemberLists(ctx, tx, id, statusDeleted, now); err != nil {
			return err
		}
		v, err := bumpMembers(ctx, tx, id, now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			"UPDATE group_members SET status = 1, version = ?, updated_at = ? WHERE group_id = ? AND status = 0",
			v, now, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE groups SET status = 1, member_count = 0 WHERE id = ?", id)
		return err
	})
}

// AddMembers implements store.Groups.
func (s *Store) AddMembers(ctx context.Context, groupID int64, userIDs []int64, role store.Role) ([]int64, error) {
	if role != store.RoleMember && role != store.RoleAdmin {
		return nil, fmt.Errorf("%w: role %d for new members", store.ErrInvalid, role)
	}
	users := uniqueInOrder(userIDs, 0)
	var added []int64
	err := s.write(ctx, "add members", func(tx *sql.Tx) error {
		added = nil
		g, err := liveGroup(ctx, tx, groupID)
		if err != nil {
			return err
		}
		if len(users) == 0 {
			return nil
		}
		if len(users) > g.maxMembers {
			// More than could ever fit: refuse before reading the members.
			return fmt.Errorf("%w: group %d holds at most %d", store.ErrGroupFull, groupID, g.maxMembers)
		}
		current := make(map[int64]bool)
		for chunk := range slices.Chunk(users, maxInArgs) {
			ids, err := queryList(ctx, tx, scanInt64,
				"SELECT user_id FROM group_members WHERE group_id = ? AND status = 0 AND user_id IN "+inList(len(chunk)),
				append([]any{groupID}, int64Args(chunk)...)...)
			if err != nil {
				return err
			}
			for _, id := range ids {
				current[id] = true
			}
		}
		for _, u := range users {
			if !current[u] {
				added = append(added, u)
			}
		}
		if len(added) == 0 {
			return nil
		}
		if g.memberCount+len(added) > g.maxMembers {
			return fmt.Errorf("%w: group %d has %d of %d members, %d more asked", store.ErrGroupFull,
				groupID, g.memberCount, g.maxMembers, len(added))
		}
		if err := checkUsers(ctx, tx, added); err != nil {
			return err
		}
		now := nowMS()
		v, err := bumpMembers(ctx, tx, groupID, now)
		if err != nil {
			return err
		}
		if err := joinGroup(ctx, tx, groupID, added, func(int64) store.Role { return role }, v, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE groups SET member_count = member_count + ? WHERE id = ?", len(added), groupID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return added, nil
}

func scanInt64(r rowScanner) (int64, error) {
	var v int64
	err := r.Scan(&v)
	return v, err
}

// RemoveMember implements store.Groups.
func (s *Store) RemoveMember(ctx context.Context, groupID, userID int64) error {
	return s.write(ctx, "remove member", func(tx *sql.Tx) error {
		if _, err := liveGroup(ctx, tx, groupID); err != nil {
			return err
		}
		role, err := liveMember(ctx, tx, groupID, userID)
		if err != nil {
			return err
		}
		if role == store.RoleOwner {
			return fmt.Errorf("%w: the owner cannot leave group %d", store.ErrConflict, groupID)
		}
		now := nowMS()
		v, err := bumpMembers(ctx, tx, groupID, now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			"UPDATE group_members SET status = 1, version = ?, updated_at = ? WHERE group_id = ? AND user_id = ?",
			v, now, groupID, userID); err != nil {
			return err
		}
		gv, err := bumpList(ctx, tx, kindGroups, userID)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			"UPDATE user_groups SET status = 1, version = ?, updated_at = ? WHERE user_id = ? AND group_id = ?",
			gv, now, userID, groupID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE groups SET member_count = member_count - 1 WHERE id = ?", groupID)
		return err
	})
}

// UpdateMember implements store.Groups.
func (s *Store) UpdateMember(ctx context.Context, groupID, userID int64, u store.MemberUpdate) error {
	if err := store.ValidateMemberUpdate(u); err != nil {
		return err
	}
	return s.write(ctx, "update member", func(tx *sql.Tx) error {
		if _, err := liveGroup(ctx, tx, groupID); err != nil {
			return err
		}
		role, err := liveMember(ctx, tx, groupID, userID)
		if err != nil {
			return err
		}
		if u.Role != nil && role == store.RoleOwner {
			return fmt.Errorf("%w: the owner's role changes only by transfer", store.ErrConflict)
		}
		q := "UPDATE group_members SET version = ?, updated_at = ?"
		var args []any
		if u.Role != nil {
			q += ", role = ?"
			args = append(args, *u.Role)
		}
		if u.Nickname != nil {
			q += ", nickname = ?"
			args = append(args, *u.Nickname)
		}
		if u.MutedUntil != nil {
			q += ", muted_until = ?"
			var ms int64
			if !u.MutedUntil.IsZero() {
				ms = max(u.MutedUntil.UnixMilli(), 0)
			}
			args = append(args, ms)
		}
		if len(args) == 0 {
			return nil
		}
		now := nowMS()
		v, err := bumpMembers(ctx, tx, groupID, now)
		if err != nil {
			return err
		}
		args = append(append([]any{v, now}, args...), groupID, userID)
		_, err = tx.ExecContext(ctx, q+" WHERE group_id = ? AND user_id = ?", args...)
		return err
	})
}

// TransferOwnership implements store.Groups.
func (s *Store) TransferOwnership(ctx context.Context, groupID, newOwner int64) error {
	return s.write(ctx, "transfer ownership", func(tx *sql.Tx) error {
		g, err := liveGroup(ctx, tx, groupID)
		if err != nil {
			return err
		}
		if _, err := liveMember(ctx, tx, groupID, newOwner); err != nil {
			return err
		}
		if g.owner == newOwner {
			return nil
		}
		now := nowMS()
		v, err := bumpMembers(ctx, tx, groupID, now)
		if err != nil {
			return err
		}
		setRole, err := tx.PrepareContext(ctx,
			"UPDATE group_members SET role = ?, version = ?, updated_at = ? WHERE group_id = ? AND user_id = ? AND status = 0")
		if err != nil {
			return err
		}
		defer setRole.Close()
		if _, err := setRole.ExecContext(ctx, store.RoleAdmin, v, now, groupID, g.owner); err != nil {
			return err
		}
		if _, err := setRole.ExecContext(ctx, store.RoleOwner, v, now, groupID, newOwner); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE groups SET owner_id = ? WHERE id = ?", newOwner, groupID)
		return err
	})
}

// Member implements store.Groups.
func (s *Store) Member(ctx context.Context, groupID, userID int64) (*store.Member, error) {
	m, err := scanMember(s.member.QueryRowContext(ctx, groupID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("member", err)
	}
	return &m, nil
}

// MemberChanges implements store.Groups.
func (s *Store) MemberChanges(ctx context.Context, groupID, since int64) (store.Changes[store.Member], error) {
	var ch store.Changes[store.Member]
	err := s.read(ctx, "member changes", func(tx *sql.Tx) error {
		var cur, minV int64
		err := tx.QueryRowContext(ctx, "SELECT version, min_version FROM groups WHERE id = ?", groupID).Scan(&cur, &minV)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: group %d", store.ErrNotFound, groupID)
		}
		if err != nil {
			return err
		}
		ch = store.Changes[store.Member]{Version: cur, Full: needFull(since, cur, minV)}
		q := "SELECT " + memberCols + " FROM group_members WHERE group_id = ? AND version > ? ORDER BY version, user_id"
		args := []any{groupID, since}
		if ch.Full {
			q = "SELECT " + memberCols + " FROM group_members WHERE group_id = ? AND status = 0 ORDER BY role DESC, joined_at, user_id"
			args = args[:1]
		}
		ch.Items, err = queryList(ctx, tx, scanMember, q, args...)
		return err
	})
	return ch, err
}

// MemberIDs implements store.Groups.
func (s *Store) MemberIDs(ctx context.Context, groupID int64) ([]int64, error) {
	var ids []int64
	err := s.read(ctx, "member ids", func(tx *sql.Tx) error {
		var err error
		ids, err = queryList(ctx, tx, scanInt64,
			"SELECT user_id FROM group_members WHERE group_id = ? AND status = 0 ORDER BY user_id", groupID)
		if err != nil || len(ids) > 0 {
			return err
		}
		// No member: a dismissed group, or no group at all.
		var one int
		err = tx.QueryRowContext(ctx, "SELECT 1 FROM groups WHERE id = ?", groupID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: group %d", store.ErrNotFound, groupID)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// UserGroupChanges implements store.Groups.
func (s *Store) UserGroupChanges(ctx context.Context, userID, since int64) (store.Changes[store.UserGroup], error) {
	var ch store.Changes[store.UserGroup]
	err := s.read(ctx, "user group changes", func(tx *sql.Tx) error {
		cur, minV, err := listVersion(ctx, tx, kindGroups, userID)
		if err != nil {
			return err
		}
		ch = store.Changes[store.UserGroup]{Version: cur, Full: needFull(since, cur, minV)}
		q := "SELECT group_id, status, version FROM user_groups WHERE user_id = ? AND version > ? ORDER BY version, group_id"
		args := []any{userID, since}
		if ch.Full {
			q = "SELECT group_id, status, version FROM user_groups WHERE user_id = ? AND status = 0 ORDER BY group_id"
			args = args[:1]
		}
		ch.Items, err = queryList(ctx, tx, scanUserGroup, q, args...)
		return err
	})
	return ch, err
}

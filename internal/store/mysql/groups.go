package mysql

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

// Every transaction changing a group locks its row first (lockGroup), then
// the group lists of the users concerned in ascending id order
// (touchUserGroups): the member count, max_members and the member-list
// version hold under concurrency, and no two transactions take these locks
// in opposite orders.

const groupCols = "id, owner_id, name, avatar, announcement, max_members, mute_all, status, member_count, version, created_at, updated_at"

func scanGroup(r rowScanner, extra ...any) (*store.Group, error) {
	var g store.Group
	var status int
	dest := append([]any{&g.ID, &g.OwnerID, &g.Name, &g.Avatar, &g.Announcement, &g.MaxMembers, &g.MuteAll, &status,
		&g.MemberCount, &g.Version, &g.CreatedAt, &g.UpdatedAt}, extra...)
	if err := r.Scan(dest...); err != nil {
		return nil, err
	}
	g.Dismissed = status != statusLive
	return &g, nil
}

const memberCols = "group_id, user_id, role, nickname, muted_until, status, version, joined_at, updated_at"

func scanMember(r rowScanner) (store.Member, error) {
	var m store.Member
	var muted sql.NullTime
	var status int
	err := r.Scan(&m.GroupID, &m.UserID, &m.Role, &m.Nickname, &muted, &status, &m.Version, &m.JoinedAt, &m.UpdatedAt)
	if muted.Valid {
		m.MutedUntil = muted.Time
	}
	m.Deleted = status != statusLive
	return m, err
}

// lockGroup reads a group under an exclusive row lock. ErrNotFound for an
// unknown group, ErrGroupDismissed for a dismissed one.
func lockGroup(ctx context.Context, tx *sql.Tx, id int64) (*store.Group, error) {
	g, err := scanGroup(tx.QueryRowContext(ctx, "SELECT "+groupCols+" FROM `group` WHERE id = ? FOR UPDATE", id))
	if err != nil {
		return nil, rowErr(err, "group")
	}
	if g.Dismissed {
		return nil, fmt.Errorf("%w: group %d", store.ErrGroupDismissed, id)
	}
	return g, nil
}

// checkUsers returns ErrNotFound naming the first of ids (sorted, unique)
// that is not a user.
func checkUsers(ctx context.Context, tx *sql.Tx, ids []int64) error {
	for chunk := range slices.Chunk(ids, maxInArgs) {
		found, err := queryAll(ctx, tx, scanInt64, "SELECT id FROM user WHERE id IN ("+placeholders(len(chunk))+") ORDER BY id",
			int64Args(chunk)...)
		if err != nil {
			return err
		}
		if len(found) == len(chunk) {
			continue
		}
		for _, id := range chunk {
			if _, ok := slices.BinarySearch(found, id); !ok {
				return fmt.Errorf("%w: user %d", store.ErrNotFound, id)
			}
		}
	}
	return nil
}

func scanInt64(r rowScanner) (int64, error) {
	var v int64
	err := r.Scan(&v)
	return v, err
}

// touchUserGroups bumps the group lists of users (locking them in
// ascending id order) and stamps their entry for groupID with the new
// versions and status.
func touchUserGroups(ctx context.Context, tx *sql.Tx, groupID int64, users []int64, status int, at time.Time) error {
	users = sortedUnique(users)
	for chunk := range slices.Chunk(users, maxInArgs) {
		var b strings.Builder
		b.WriteString("INSERT INTO list_version (user_id, kind, version) VALUES ")
		args := make([]any, 0, 2*len(chunk))
		for i, id := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?,?,1)")
			args = append(args, id, kindGroups)
		}
		b.WriteString(" ON DUPLICATE KEY UPDATE version = version + 1")
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			if isForeignKeyViolation(err) {
				return fmt.Errorf("%w: user", store.ErrNotFound)
			}
			return err
		}
		args = append([]any{groupID, status, at, kindGroups}, int64Args(chunk)...)
		if _, err := tx.ExecContext(ctx, `INSERT INTO user_group (user_id, group_id, status, version, updated_at)
			SELECT user_id, ?, ?, version, ? FROM list_version WHERE kind = ? AND user_id IN (`+placeholders(len(chunk))+`)
			ON DUPLICATE KEY UPDATE status = VALUES(status), version = VALUES(version), updated_at = VALUES(updated_at)`,
			args...); err != nil {
			return err
		}
	}
	return nil
}

// liveMemberIDs returns the current members of a (locked) group, ascending.
func liveMemberIDs(ctx context.Context, q execer, groupID int64) ([]int64, error) {
	return queryAll(ctx, q, scanInt64, "SELECT user_id FROM group_member WHERE group_id = ? AND status = 0 ORDER BY user_id", groupID)
}

// CreateGroup implements store.Groups.
func (s *Store) CreateGroup(ctx context.Context, g *store.Group, members []int64) (int64, error) {
	if err := store.ValidateGroup(g); err != nil {
		return 0, err
	}
	if g.OwnerID <= 0 {
		return 0, fmt.Errorf("%w: owner %d", store.ErrInvalid, g.OwnerID)
	}
	others := sortedUnique(members)
	others = slices.DeleteFunc(others, func(id int64) bool { return id == g.OwnerID })
	all := sortedUnique(append([]int64{g.OwnerID}, others...))
	if len(all) > g.MaxMembers {
		return 0, fmt.Errorf("%w: %d members, max %d", store.ErrGroupFull, len(all), g.MaxMembers)
	}
	at := now()
	var id int64
	err := s.inTx(ctx, "create group", func(tx *sql.Tx) error {
		if err := checkUsers(ctx, tx, all); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO `group` (owner_id, name, avatar, announcement, max_members, mute_all,"+
			" status, member_count, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, 1, ?, ?)",
			g.OwnerID, g.Name, g.Avatar, g.Announcement, g.MaxMembers, g.MuteAll, len(all), at, at)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		if err := insertMembers(ctx, tx, id, []int64{g.OwnerID}, store.RoleOwner, 1, at); err != nil {
			return err
		}
		if err := insertMembers(ctx, tx, id, others, store.RoleMember, 1, at); err != nil {
			return err
		}
		return touchUserGroups(ctx, tx, id, all, statusLive, at)
	})
	if err != nil {
		return 0, err
	}
	g.ID, g.MemberCount, g.Version, g.Dismissed = id, len(all), 1, false
	g.CreatedAt, g.UpdatedAt = at, at
	return id, nil
}

// insertMembers adds users to a group with role at version, reviving the
// tombstones of former members as fresh memberships.
func insertMembers(ctx context.Context, tx *sql.Tx, groupID int64, users []int64, role store.Role, version int64, at time.Time) error {
	for chunk := range slices.Chunk(users, maxInArgs) {
		var b strings.Builder
		b.WriteString("INSERT INTO group_member (group_id, user_id, role, nickname, muted_until, status, version, joined_at, updated_at) VALUES ")
		args := make([]any, 0, 6*len(chunk))
		for i, u := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?,?,?,'',NULL,0,?,?,?)")
			args = append(args, groupID, u, role, version, at, at)
		}
		b.WriteString(` ON DUPLICATE KEY UPDATE role = VALUES(role), nickname = '', muted_until = NULL, status = 0,
			version = VALUES(version), joined_at = VALUES(joined_at), updated_at = VALUES(updated_at)`)
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// Group implements store.Groups.
func (s *Store) Group(ctx context.Context, id int64) (*store.Group, error) {
	g, err := scanGroup(s.groupByID.QueryRowContext(ctx, id))
	if err != nil {
		return nil, rowErr(err, "group")
	}
	return g, nil
}

// UpdateGroup implements store.Groups.
func (s *Store) UpdateGroup(ctx context.Context, id int64, u store.GroupUpdate) error {
	if err := store.ValidateGroupUpdate(u); err != nil {
		return err
	}
	var sets []string
	var args []any
	if u.Name != nil {
		sets, args = append(sets, "name = ?"), append(args, *u.Name)
	}
	if u.Avatar != nil {
		sets, args = append(sets, "avatar = ?"), append(args, *u.Avatar)
	}
	if u.Announcement != nil {
		sets, args = append(sets, "announcement = ?"), append(args, *u.Announcement)
	}
	if u.MuteAll != nil {
		sets, args = append(sets, "mute_all = ?"), append(args, *u.MuteAll)
	}
	if u.MaxMembers != nil {
		sets, args = append(sets, "max_members = ?"), append(args, *u.MaxMembers)
	}
	return s.inTx(ctx, "update group", func(tx *sql.Tx) error {
		g, err := lockGroup(ctx, tx, id)
		if err != nil {
			return err
		}
		if u.MaxMembers != nil && *u.MaxMembers < g.MemberCount {
			return fmt.Errorf("%w: max members %d below the member count %d", store.ErrConflict, *u.MaxMembers, g.MemberCount)
		}
		if len(sets) == 0 {
			return nil
		}
		at := now()
		if _, err := tx.ExecContext(ctx, "UPDATE `group` SET "+strings.Join(sets, ", ")+", updated_at = ? WHERE id = ?",
			append(args, at, id)...); err != nil {
			return err
		}
		// Members learn of the change by their group list: the entry
		// reappears in UserGroupChanges.
		members, err := liveMemberIDs(ctx, tx, id)
		if err != nil {
			return err
		}
		return touchUserGroups(ctx, tx, id, members, statusLive, at)
	})
}

// DismissGroup implements store.Groups.
func (s *Store) DismissGroup(ctx context.Context, id int64) error {
	return s.inTx(ctx, "dismiss group", func(tx *sql.Tx) error {
		g, err := lockGroup(ctx, tx, id)
		if err != nil {
			return err
		}
		members, err := liveMemberIDs(ctx, tx, id)
		if err != nil {
			return err
		}
		at, v := now(), g.Version+1
		if _, err := tx.ExecContext(ctx, "UPDATE group_member SET status = 1, version = ?, updated_at = ? WHERE group_id = ? AND status = 0",
			v, at, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE `group` SET status = 1, member_count = 0, version = ?, updated_at = ? WHERE id = ?",
			v, at, id); err != nil {
			return err
		}
		return touchUserGroups(ctx, tx, id, members, statusDeleted, at)
	})
}

// AddMembers implements store.Groups.
func (s *Store) AddMembers(ctx context.Context, groupID int64, userIDs []int64, role store.Role) ([]int64, error) {
	if role != store.RoleMember && role != store.RoleAdmin {
		return nil, fmt.Errorf("%w: role %d", store.ErrInvalid, role)
	}
	// Unique, in the order given.
	seen := make(map[int64]bool, len(userIDs))
	var want []int64
	for _, id := range userIDs {
		if !seen[id] {
			seen[id] = true
			want = append(want, id)
		}
	}
	var added []int64
	err := s.inTx(ctx, "add members", func(tx *sql.Tx) error {
		added = nil
		g, err := lockGroup(ctx, tx, groupID)
		if err != nil || len(want) == 0 {
			return err
		}
		sorted := sortedUnique(want)
		if err := checkUsers(ctx, tx, sorted); err != nil {
			return err
		}
		current := make(map[int64]bool)
		for chunk := range slices.Chunk(sorted, maxInArgs) {
			ids, err := queryAll(ctx, tx, scanInt64, "SELECT user_id FROM group_member WHERE group_id = ? AND status = 0 AND user_id IN ("+
				placeholders(len(chunk))+")", append([]any{groupID}, int64Args(chunk)...)...)
			if err != nil {
				return err
			}
			for _, id := range ids {
				current[id] = true
			}
		}
		for _, id := range want {
			if !current[id] {
				added = append(added, id)
			}
		}
		if len(added) == 0 {
			return nil
		}
		if g.MemberCount+len(added) > g.MaxMembers {
			return fmt.Errorf("%w: %d members + %d, max %d", store.ErrGroupFull, g.MemberCount, len(added), g.MaxMembers)
		}
		at, v := now(), g.Version+1
		if err := insertMembers(ctx, tx, groupID, sortedUnique(added), role, v, at); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE `group` SET member_count = member_count + ?, version = ?, updated_at = ? WHERE id = ?",
			len(added), v, at, groupID); err != nil {
			return err
		}
		return touchUserGroups(ctx, tx, groupID, added, statusLive, at)
	})
	if err != nil {
		return nil, err
	}
	return added, nil
}

// lockMember reads a current membership of a locked group.
func lockMember(ctx context.Context, tx *sql.Tx, groupID, userID int64) (store.Member, error) {
	m, err := scanMember(tx.QueryRowContext(ctx, "SELECT "+memberCols+" FROM group_member WHERE group_id = ? AND user_id = ? AND status = 0 FOR UPDATE",
		groupID, userID))
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return m, fmt.Errorf("%w: user %d is not a member of group %d", store.ErrNotFound, userID, groupID)
		}
		return m, err
	}
	return m, nil
}

// RemoveMember implements store.Groups.
func (s *Store) RemoveMember(ctx context.Context, groupID, userID int64) error {
	return s.inTx(ctx, "remove member", func(tx *sql.Tx) error {
		g, err := lockGroup(ctx, tx, groupID)
		if err != nil {
			return err
		}
		m, err := lockMember(ctx, tx, groupID, userID)
		if err != nil {
			return err
		}
		if m.Role == store.RoleOwner {
			return fmt.Errorf("%w: the owner cannot leave the group", store.ErrConflict)
		}
		at, v := now(), g.Version+1
		if _, err := tx.ExecContext(ctx, "UPDATE group_member SET status = 1, version = ?, updated_at = ? WHERE group_id = ? AND user_id = ?",
			v, at, groupID, userID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE `group` SET member_count = member_count - 1, version = ?, updated_at = ? WHERE id = ?",
			v, at, groupID); err != nil {
			return err
		}
		return touchUserGroups(ctx, tx, groupID, []int64{userID}, statusDeleted, at)
	})
}

// UpdateMember implements store.Groups.
func (s *Store) UpdateMember(ctx context.Context, groupID, userID int64, u store.MemberUpdate) error {
	if err := store.ValidateMemberUpdate(u); err != nil {
		return err
	}
	var sets []string
	var args []any
	if u.Role != nil {
		sets, args = append(sets, "role = ?"), append(args, *u.Role)
	}
	if u.Nickname != nil {
		sets, args = append(sets, "nickname = ?"), append(args, *u.Nickname)
	}
	if u.MutedUntil != nil {
		var muted sql.NullTime
		if !u.MutedUntil.IsZero() {
			muted = sql.NullTime{Time: ms(*u.MutedUntil), Valid: true}
		}
		sets, args = append(sets, "muted_until = ?"), append(args, muted)
	}
	return s.inTx(ctx, "update member", func(tx *sql.Tx) error {
		g, err := lockGroup(ctx, tx, groupID)
		if err != nil {
			return err
		}
		m, err := lockMember(ctx, tx, groupID, userID)
		if err != nil {
			return err
		}
		if u.Role != nil && m.Role == store.RoleOwner {
			return fmt.Errorf("%w: the owner's role changes only by a transfer", store.ErrConflict)
		}
		if len(sets) == 0 {
			return nil
		}
		at, v := now(), g.Version+1
		if _, err := tx.ExecContext(ctx, "UPDATE group_member SET "+strings.Join(sets, ", ")+", version = ?, updated_at = ? WHERE group_id = ? AND user_id = ?",
			append(args, v, at, groupID, userID)...); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE `group` SET version = ?, updated_at = ? WHERE id = ?", v, at, groupID)
		return err
	})
}

// TransferOwnership implements store.Groups.
func (s *Store) TransferOwnership(ctx context.Context, groupID, newOwner int64) error {
	return s.inTx(ctx, "transfer ownership", func(tx *sql.Tx) error {
		g, err := lockGroup(ctx, tx, groupID)
		if err != nil {
			return err
		}
		if _, err := lockMember(ctx, tx, groupID, newOwner); err != nil {
			return err
		}
		if g.OwnerID == newOwner {
			return nil
		}
		at, v := now(), g.Version+1
		for _, r := range []struct {
			user int64
			role store.Role
		}{{g.OwnerID, store.RoleAdmin}, {newOwner, store.RoleOwner}} {
			if _, err := tx.ExecContext(ctx, "UPDATE group_member SET role = ?, version = ?, updated_at = ? WHERE group_id = ? AND user_id = ?",
				r.role, v, at, groupID, r.user); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, "UPDATE `group` SET owner_id = ?, version = ?, updated_at = ? WHERE id = ?", newOwner, v, at, groupID)
		return err
	})
}

// Member implements store.Groups: one primary-key lookup.
func (s *Store) Member(ctx context.Context, groupID, userID int64) (*store.Member, error) {
	m, err := scanMember(s.member.QueryRowContext(ctx, groupID, userID))
	if err != nil {
		return nil, rowErr(err, "member")
	}
	return &m, nil
}

// MemberChanges implements store.Groups.
func (s *Store) MemberChanges(ctx context.Context, groupID, since int64) (store.Changes[store.Member], error) {
	var c store.Changes[store.Member]
	err := s.snapshot(ctx, "member changes", func(tx *sql.Tx) error {
		var minV int64
		err := tx.QueryRowContext(ctx, "SELECT version, min_version FROM `group` WHERE id = ?", groupID).Scan(&c.Version, &minV)
		if err != nil {
			return rowErr(err, "group")
		}
		c.Full = fullList(since, c.Version, minV)
		if c.Full {
			c.Items, err = queryAll(ctx, tx, scanMember, "SELECT "+memberCols+
				" FROM group_member WHERE group_id = ? AND status = 0 ORDER BY role DESC, joined_at, user_id", groupID)
			return err
		}
		c.Items, err = queryAll(ctx, tx, scanMember, "SELECT "+memberCols+
			" FROM group_member WHERE group_id = ? AND version > ? ORDER BY version, user_id", groupID, since)
		return err
	})
	return c, err
}

// MemberIDs implements store.Groups: one query whatever the group.
func (s *Store) MemberIDs(ctx context.Context, groupID int64) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT m.user_id FROM `group` g LEFT JOIN group_member m"+
		" ON m.group_id = g.id AND m.status = 0 WHERE g.id = ? ORDER BY m.user_id", groupID)
	if err != nil {
		return nil, fmt.Errorf("mysql: member ids: %w", err)
	}
	defer rows.Close()
	var ids []int64
	found := false
	for rows.Next() {
		found = true
		var id sql.NullInt64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("mysql: member ids: %w", err)
		}
		if id.Valid {
			ids = append(ids, id.Int64)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysql: member ids: %w", err)
	}
	if !found {
		return nil, fmt.Errorf("%w: group %d", store.ErrNotFound, groupID)
	}
	return ids, nil
}

// UserGroupChanges implements store.Groups.
func (s *Store) UserGroupChanges(ctx context.Context, userID, since int64) (store.Changes[store.UserGroup], error) {
	var c store.Changes[store.UserGroup]
	scan := func(r rowScanner) (store.UserGroup, error) {
		var ug store.UserGroup
		var status int
		err := r.Scan(&ug.GroupID, &status, &ug.Version)
		ug.Deleted = status != statusLive
		return ug, err
	}
	err := s.snapshot(ctx, "user group changes", func(tx *sql.Tx) error {
		v, minV, err := listVersion(ctx, tx, kindGroups, userID)
		if err != nil {
			return err
		}
		c.Version = v
		c.Full = fullList(since, v, minV)
		if c.Full {
			c.Items, err = queryAll(ctx, tx, scan, "SELECT group_id, status, version FROM user_group WHERE user_id = ? AND status = 0 ORDER BY group_id", userID)
			return err
		}
		c.Items, err = queryAll(ctx, tx, scan, "SELECT group_id, status, version FROM user_group WHERE user_id = ? AND version > ? ORDER BY version, group_id",
			userID, since)
		return err
	})
	return c, err
}

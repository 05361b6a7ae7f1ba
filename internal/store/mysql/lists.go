package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/goimdev/goim/internal/store"
)

// Kinds of per-user lists in list_version.
const (
	kindFriends = 1
	kindGroups  = 2
)

// Row states of the versioned tables.
const (
	statusLive    = 0
	statusDeleted = 1 // a tombstone (friendship, group_member, user_group) or a dismissed group
)

// lockLists locks the kind lists of ids in ascending id order (creating
// missing counters at version 0) and returns their versions. Every
// transaction changing a user's list goes through here first, so the
// changes of one list are serialised and two transactions locking several
// lists cannot deadlock on them. ErrNotFound if a user does not exist.
func lockLists(ctx context.Context, tx *sql.Tx, kind int, ids []int64) (map[int64]int64, error) {
	ids = sortedUnique(ids)
	vs := make(map[int64]int64, len(ids))
	for chunk := range slices.Chunk(ids, maxInArgs) {
		var b strings.Builder
		b.WriteString("INSERT INTO list_version (user_id, kind, version) VALUES ")
		args := make([]any, 0, 2*len(chunk))
		for i, id := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?,?,0)")
			args = append(args, id, kind)
		}
		// A no-op update still takes the row's exclusive lock.
		b.WriteString(" ON DUPLICATE KEY UPDATE version = version")
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			if isForeignKeyViolation(err) {
				return nil, fmt.Errorf("%w: user", store.ErrNotFound)
			}
			return nil, err
		}
		rows, err := tx.QueryContext(ctx, "SELECT user_id, version FROM list_version WHERE kind = ? AND user_id IN ("+
			placeholders(len(chunk))+")", append([]any{kind}, int64Args(chunk)...)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, v int64
			if err := rows.Scan(&id, &v); err != nil {
				rows.Close()
				return nil, err
			}
			vs[id] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return vs, nil
}

// bumpLists raises the locked kind lists of ids by one and updates vs.
func bumpLists(ctx context.Context, tx *sql.Tx, kind int, ids []int64, vs map[int64]int64) error {
	ids = sortedUnique(ids)
	for chunk := range slices.Chunk(ids, maxInArgs) {
		if _, err := tx.ExecContext(ctx, "UPDATE list_version SET version = version + 1 WHERE kind = ? AND user_id IN ("+
			placeholders(len(chunk))+")", append([]any{kind}, int64Args(chunk)...)...); err != nil {
			return err
		}
	}
	for _, id := range ids {
		vs[id]++
	}
	return nil
}

// listVersion reads a user's kind list counters (zero for a list that
// never changed).
func listVersion(ctx context.Context, q execer, kind int, userID int64) (version, minVersion int64, err error) {
	err = q.QueryRowContext(ctx, "SELECT version, min_version FROM list_version WHERE user_id = ? AND kind = ?",
		userID, kind).Scan(&version, &minVersion)
	if err == sql.ErrNoRows {
		return 0, 0, nil
	}
	return version, minVersion, err
}

// fullList reports whether "changes since" must answer with the full list.
func fullList(since, version, minVersion int64) bool {
	return since <= 0 || since < minVersion || since > version
}

// snapshot runs fn in a read-only repeatable-read transaction: every query
// of fn reads the same consistent snapshot, so a list's version and its
// rows agree even while they change.
func (s *Store) snapshot(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("mysql: %s: %w", what, err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	if err := fn(tx); err != nil {
		if isStoreErr(err) {
			return err
		}
		return fmt.Errorf("mysql: %s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mysql: %s: %w", what, err)
	}
	return nil
}

// queryAll runs query and scans every row with scan.
func queryAll[T any](ctx context.Context, q execer, scan func(r rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/goimdev/goim/internal/store"
)

var _ store.Tombstones = (*Store)(nil)

// tombstone is a pruning candidate: the list it belongs to (owner), the
// other key column (other) and the version it was stamped with.
type tombstone struct{ owner, other, version int64 }

// tombstoneTable describes one versioned table for PruneTombstones.
type tombstoneTable struct {
	table, ownerCol, otherCol string
	// lock locks the lists owning the candidates, in the order every
	// writer uses.
	lock func(ctx context.Context, tx *sql.Tx, owners []int64) error
	// raise sets a list's min_version to at least v.
	raise string
}

var tombstoneTables = []tombstoneTable{
	{
		table: "friendship", ownerCol: "user_id", otherCol: "friend_id",
		lock: func(ctx context.Context, tx *sql.Tx, owners []int64) error {
			_, err := lockLists(ctx, tx, kindFriends, owners)
			return err
		},
		raise: "UPDATE list_version SET min_version = GREATEST(min_version, ?) WHERE user_id = ? AND kind = 1",
	},
	{
		table: "user_group", ownerCol: "user_id", otherCol: "group_id",
		lock: func(ctx context.Context, tx *sql.Tx, owners []int64) error {
			_, err := lockLists(ctx, tx, kindGroups, owners)
			return err
		},
		raise: "UPDATE list_version SET min_version = GREATEST(min_version, ?) WHERE user_id = ? AND kind = 2",
	},
	{
		table: "group_member", ownerCol: "group_id", otherCol: "user_id",
		lock: func(ctx context.Context, tx *sql.Tx, owners []int64) error {
			_, err := queryAll(ctx, tx, scanInt64, "SELECT id FROM `group` WHERE id IN ("+placeholders(len(owners))+
				") ORDER BY id FOR UPDATE", int64Args(owners)...)
			return err
		},
		raise: "UPDATE `group` SET min_version = GREATEST(min_version, ?) WHERE id = ?",
	},
}

// pruneBatch bounds the tombstones of one pruning transaction.
const pruneBatch = 500

// PruneTombstones implements store.Tombstones. Each batch is one
// transaction that locks the lists concerned first (as every writer does),
// deletes the candidates that are still tombstones and raises those lists'
// min_version to the highest version it deleted.
func (s *Store) PruneTombstones(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%w: limit %d", store.ErrInvalid, limit)
	}
	cutoff := ms(before)
	total := 0
	for _, t := range tombstoneTables {
		for total < limit {
			n, more, err := s.pruneBatch(ctx, t, cutoff, min(pruneBatch, limit-total))
			if err != nil {
				return total, err
			}
			total += n
			if !more {
				break
			}
		}
	}
	return total, nil
}

// pruneBatch prunes up to n tombstones of t; more reports that the table
// may hold more.
func (s *Store) pruneBatch(ctx context.Context, t tombstoneTable, cutoff time.Time, n int) (deleted int, more bool, err error) {
	scan := func(r rowScanner) (tombstone, error) {
		var ts tombstone
		err := r.Scan(&ts.owner, &ts.other, &ts.version)
		return ts, err
	}
	cands, err := queryAll(ctx, s.db, scan, fmt.Sprintf("SELECT %s, %s, version FROM %s WHERE status = 1 AND updated_at < ? ORDER BY updated_at LIMIT ?",
		t.ownerCol, t.otherCol, t.table), cutoff, n)
	if err != nil {
		return 0, false, fmt.Errorf("mysql: prune %s: %w", t.table, err)
	}
	if len(cands) == 0 {
		return 0, false, nil
	}
	owners := make([]int64, len(cands))
	for i, c := range cands {
		owners[i] = c.owner
	}
	owners = sortedUnique(owners)
	err = s.inTx(ctx, "prune "+t.table, func(tx *sql.Tx) error {
		deleted = 0
		if err := t.lock(ctx, tx, owners); err != nil {
			return err
		}
		// Under the list locks nobody changes these rows: keep those that
		// are still the same tombstones.
		var cond strings.Builder
		args := make([]any, 0, 3*len(cands))
		for i, c := range cands {
			if i > 0 {
				cond.WriteString(" OR ")
			}
			fmt.Fprintf(&cond, "(%s = ? AND %s = ? AND version = ?)", t.ownerCol, t.otherCol)
			args = append(args, c.owner, c.other, c.version)
		}
		where := "status = 1 AND (" + cond.String() + ")"
		still, err := queryAll(ctx, tx, scan, fmt.Sprintf("SELECT %s, %s, version FROM %s WHERE %s", t.ownerCol, t.otherCol, t.table, where), args...)
		if err != nil || len(still) == 0 {
			return err
		}
		res, err := tx.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s", t.table, where), args...)
		if err != nil {
			return err
		}
		c, err := res.RowsAffected()
		if err != nil {
			return err
		}
		deleted = int(c)
		highest := make(map[int64]int64)
		for _, ts := range still {
			highest[ts.owner] = max(highest[ts.owner], ts.version)
		}
		keys := make([]int64, 0, len(highest))
		for o := range highest {
			keys = append(keys, o)
		}
		slices.Sort(keys)
		for _, o := range keys {
			if _, err := tx.ExecContext(ctx, t.raise, highest[o], o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return deleted, len(cands) == n, nil
}

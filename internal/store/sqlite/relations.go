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

// Kinds of the per-user lists whose versions live in list_versions. A
// group's member list keeps its counters in the groups row.
const (
	kindFriends = 1
	kindGroups  = 2
)

// Row status of friendships, group_members and user_groups.
const (
	statusLive    = 0
	statusDeleted = 1 // a tombstone
)

func nowMS() int64 { return time.Now().UnixMilli() }

// timeMS converts a stored unix-millisecond time; 0 is the zero time.
func timeMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// isStoreErr reports whether err is (wraps) a store sentinel, which
// already says what went wrong and is returned as is.
func isStoreErr(err error) bool {
	for _, e := range []error{store.ErrNotFound, store.ErrInvalid, store.ErrConflict,
		store.ErrGroupFull, store.ErrGroupDismissed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func wrap(what string, err error) error {
	if err == nil || isStoreErr(err) {
		return err
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}

// write runs fn in a transaction on the writer connection (BEGIN
// IMMEDIATE: the write lock is taken at BEGIN, so concurrent writers
// queue on the busy timeout instead of failing to upgrade) and commits it
// if fn returns nil.
func (s *Store) write(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap(what, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return wrap(what, err)
	}
	return wrap(what, tx.Commit())
}

// read runs fn in a read-only transaction on the read pool: one consistent
// snapshot of the database (WAL), not blocking the writer.
func (s *Store) read(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return wrap(what, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to commit
	return wrap(what, fn(tx))
}

// bumpList increments the version of a per-user list and returns it.
func bumpList(ctx context.Context, tx *sql.Tx, kind int, owner int64) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx,
		`INSERT INTO list_versions (kind, owner_id, version) VALUES (?, ?, 1)
		 ON CONFLICT (kind, owner_id) DO UPDATE SET version = version + 1 RETURNING version`,
		kind, owner).Scan(&v)
	return v, err
}

// listVersion returns a per-user list's current and minimum answerable
// versions (0, 0 for a list never changed).
func listVersion(ctx context.Context, tx *sql.Tx, kind int, owner int64) (cur, minV int64, err error) {
	err = tx.QueryRowContext(ctx, "SELECT version, min_version FROM list_versions WHERE kind = ? AND owner_id = ?",
		kind, owner).Scan(&cur, &minV)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	return cur, minV, err
}

// needFull reports whether "changes since" must answer with the full list.
func needFull(since, cur, minV int64) bool {
	return since <= 0 || since < minV || since > cur
}

// checkUsers returns ErrNotFound naming the first id of ids that is not a
// user.
func checkUsers(ctx context.Context, tx *sql.Tx, ids []int64) error {
	uniq := slices.Clone(ids)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	found := make(map[int64]bool, len(uniq))
	for chunk := range slices.Chunk(uniq, maxInArgs) {
		rows, err := tx.QueryContext(ctx, "SELECT id FROM users WHERE id IN "+inList(len(chunk)), int64Args(chunk)...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			found[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	for _, id := range ids {
		if !found[id] {
			return fmt.Errorf("%w: user %d", store.ErrNotFound, id)
		}
	}
	return nil
}

func inList(n int) string { return "(?" + strings.Repeat(",?", n-1) + ")" }

func int64Args(ids []int64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args
}

// uniqueInOrder returns ids without duplicates and without skip, in order.
func uniqueInOrder(ids []int64, skip int64) []int64 {
	seen := make(map[int64]bool, len(ids))
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		if id == skip || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
	}
	return out
}

// Friend requests and friendships.

const requestCols = "id, from_user, to_user, message, status, created_at, updated_at"

func scanRequest(r rowScanner) (*store.FriendRequest, error) {
	var q store.FriendRequest
	var created, updated int64
	if err := r.Scan(&q.ID, &q.FromUser, &q.ToUser, &q.Message, &q.Status, &created, &updated); err != nil {
		return nil, err
	}
	q.CreatedAt, q.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	return &q, nil
}

// CreateFriendRequest implements store.Friends.
func (s *Store) CreateFriendRequest(ctx context.Context, from, to int64, message string) (*store.FriendRequest, bool, error) {
	if err := store.ValidateRequestMessage(message); err != nil {
		return nil, false, err
	}
	if from == to {
		return nil, false, fmt.Errorf("%w: friend request to oneself", store.ErrInvalid)
	}
	var req *store.FriendRequest
	var merged bool
	err := s.write(ctx, "create friend request", func(tx *sql.Tx) error {
		if err := checkUsers(ctx, tx, []int64{from, to}); err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ? AND status = 0",
			from, to).Scan(&one)
		switch {
		case err == nil:
			return fmt.Errorf("%w: users %d and %d are already friends", store.ErrConflict, from, to)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		now := nowMS()
		req, err = scanRequest(tx.QueryRowContext(ctx,
			`UPDATE friend_requests SET message = ?, updated_at = ? WHERE from_user = ? AND to_user = ? AND status = 0
			 RETURNING `+requestCols, message, now, from, to))
		if err == nil {
			merged = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		req, err = scanRequest(tx.QueryRowContext(ctx,
			`INSERT INTO friend_requests (from_user, to_user, message, status, created_at, updated_at)
			 VALUES (?, ?, ?, 0, ?, ?) RETURNING `+requestCols, from, to, message, now, now))
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return req, merged, nil
}

// FriendRequest implements store.Friends.
func (s *Store) FriendRequest(ctx context.Context, id int64) (*store.FriendRequest, error) {
	req, err := scanRequest(s.r.QueryRowContext(ctx, "SELECT "+requestCols+" FROM friend_requests WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: friend request %d", store.ErrNotFound, id)
	}
	return req, wrap("friend request", err)
}

// FriendRequests implements store.Friends.
func (s *Store) FriendRequests(ctx context.Context, userID int64, limit int) (incoming, outgoing []store.FriendRequest, err error) {
	if limit <= 0 {
		return nil, nil, fmt.Errorf("%w: limit %d", store.ErrInvalid, limit)
	}
	err = s.read(ctx, "friend requests", func(tx *sql.Tx) error {
		var err error
		if incoming, err = queryRequests(ctx, tx, "to_user", userID, limit); err != nil {
			return err
		}
		outgoing, err = queryRequests(ctx, tx, "from_user", userID, limit)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return incoming, outgoing, nil
}

func queryRequests(ctx context.Context, tx *sql.Tx, col string, userID int64, limit int) ([]store.FriendRequest, error) {
	rows, err := tx.QueryContext(ctx, "SELECT "+requestCols+" FROM friend_requests WHERE "+col+
		" = ? ORDER BY updated_at DESC, id DESC LIMIT ?", userID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var reqs []store.FriendRequest
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, *r)
	}
	return reqs, rows.Err()
}

// ResolveFriendRequest implements store.Friends.
func (s *Store) ResolveFriendRequest(ctx context.Context, id int64, accept bool) (*store.FriendRequest, error) {
	var req *store.FriendRequest
	err := s.write(ctx, "resolve friend request", func(tx *sql.Tx) error {
		var err error
		req, err = scanRequest(tx.QueryRowContext(ctx, "SELECT "+requestCols+" FROM friend_requests WHERE id = ?", id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: friend request %d", store.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if req.Status != store.RequestPending {
			return fmt.Errorf("%w: friend request %d is not pending", store.ErrConflict, id)
		}
		now := nowMS()
		req.Status = store.RequestRejected
		if accept {
			req.Status = store.RequestAccepted
		}
		req.UpdatedAt = time.UnixMilli(now)
		if _, err := tx.ExecContext(ctx, "UPDATE friend_requests SET status = ?, updated_at = ? WHERE id = ?",
			req.Status, now, id); err != nil {
			return err
		}
		if !accept {
			return nil
		}
		if _, err := tx.ExecContext(ctx,
			"UPDATE friend_requests SET status = ?, updated_at = ? WHERE from_user = ? AND to_user = ? AND status = 0",
			store.RequestAccepted, now, req.ToUser, req.FromUser); err != nil {
			return err
		}
		for _, p := range [2][2]int64{{req.FromUser, req.ToUser}, {req.ToUser, req.FromUser}} {
			if err := addFriend(ctx, tx, p[0], p[1], now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return req, nil
}

// addFriend makes friendID a friend of userID (one direction), reviving a
// tombstone as a fresh friendship.
func addFriend(ctx context.Context, tx *sql.Tx, userID, friendID, now int64) error {
	var live int
	err := tx.QueryRowContext(ctx, "SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ? AND status = 0",
		userID, friendID).Scan(&live)
	if err == nil {
		return nil // already friends: nothing changes
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	v, err := bumpList(ctx, tx, kindFriends, userID)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO friendships (user_id, friend_id, remark, status, version, created_at, updated_at)
		 VALUES (?, ?, '', 0, ?, ?, ?)
		 ON CONFLICT (user_id, friend_id) DO UPDATE SET remark = '', status = 0, version = excluded.version,
		 created_at = excluded.created_at, updated_at = excluded.updated_at`,
		userID, friendID, v, now, now)
	return err
}

const friendCols = "user_id, friend_id, remark, status, version, created_at, updated_at"

func scanFriend(r rowScanner) (store.Friend, error) {
	var f store.Friend
	var status int
	var created, updated int64
	if err := r.Scan(&f.UserID, &f.FriendID, &f.Remark, &status, &f.Version, &created, &updated); err != nil {
		return f, err
	}
	f.Deleted = status == statusDeleted
	f.CreatedAt, f.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	return f, nil
}

// Friend implements store.Friends.
func (s *Store) Friend(ctx context.Context, userID, friendID int64) (*store.Friend, error) {
	f, err := scanFriend(s.friend.QueryRowContext(ctx, userID, friendID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("friend", err)
	}
	return &f, nil
}

// FriendChanges implements store.Friends.
func (s *Store) FriendChanges(ctx context.Context, userID, since int64) (store.Changes[store.Friend], error) {
	var ch store.Changes[store.Friend]
	err := s.read(ctx, "friend changes", func(tx *sql.Tx) error {
		cur, minV, err := listVersion(ctx, tx, kindFriends, userID)
		if err != nil {
			return err
		}
		ch = store.Changes[store.Friend]{Version: cur, Full: needFull(since, cur, minV)}
		q := "SELECT " + friendCols + " FROM friendships WHERE user_id = ? AND version > ? ORDER BY version, friend_id"
		args := []any{userID, since}
		if ch.Full {
			q = "SELECT " + friendCols + " FROM friendships WHERE user_id = ? AND status = 0 ORDER BY friend_id"
			args = args[:1]
		}
		ch.Items, err = queryList(ctx, tx, scanFriend, q, args...)
		return err
	})
	return ch, err
}

func queryList[T any](ctx context.Context, tx *sql.Tx, scan func(rowScanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []T
	for rows.Next() {
		it, err := scan(rows)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

// SetFriendRemark implements store.Friends.
func (s *Store) SetFriendRemark(ctx context.Context, userID, friendID int64, remark string) error {
	if err := store.ValidateRemark(remark); err != nil {
		return err
	}
	return s.write(ctx, "set friend remark", func(tx *sql.Tx) error {
		v, err := bumpList(ctx, tx, kindFriends, userID)
		if err != nil {
			return err
		}
		return updateOne(ctx, tx, store.ErrNotFound,
			"UPDATE friendships SET remark = ?, version = ?, updated_at = ? WHERE user_id = ? AND friend_id = ? AND status = 0",
			remark, v, nowMS(), userID, friendID)
	})
}

// updateOne runs an UPDATE and returns notFound if it changed no row (the
// caller's transaction then rolls back whatever it did before).
func updateOne(ctx context.Context, tx *sql.Tx, notFound error, q string, args ...any) error {
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound
	}
	return nil
}

// DeleteFriend implements store.Friends.
func (s *Store) DeleteFriend(ctx context.Context, userID, friendID int64) error {
	return s.write(ctx, "delete friend", func(tx *sql.Tx) error {
		now := nowMS()
		for i, p := range [2][2]int64{{userID, friendID}, {friendID, userID}} {
			v, err := bumpList(ctx, tx, kindFriends, p[0])
			if err != nil {
				return err
			}
			err = updateOne(ctx, tx, store.ErrNotFound,
				`UPDATE friendships SET status = 1, remark = '', version = ?, updated_at = ?
				 WHERE user_id = ? AND friend_id = ? AND status = 0`, v, now, p[0], p[1])
			// The other direction always exists; if it somehow does not,
			// removing userID's side still ends the friendship.
			if err != nil && (i == 0 || !errors.Is(err, store.ErrNotFound)) {
				return err
			}
		}
		return nil
	})
}

// Blocks.

// BlockUser implements store.Blocks.
func (s *Store) BlockUser(ctx context.Context, userID, blockedID int64) error {
	if userID == blockedID {
		return fmt.Errorf("%w: blocking oneself", store.ErrInvalid)
	}
	_, err := s.w.ExecContext(ctx,
		"INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?) ON CONFLICT (user_id, blocked_id) DO NOTHING",
		userID, blockedID, nowMS())
	if isForeignKeyViolation(err) {
		return fmt.Errorf("%w: user %d or %d", store.ErrNotFound, userID, blockedID)
	}
	return wrap("block user", err)
}

// UnblockUser implements store.Blocks.
func (s *Store) UnblockUser(ctx context.Context, userID, blockedID int64) error {
	_, err := s.w.ExecContext(ctx, "DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?", userID, blockedID)
	return wrap("unblock user", err)
}

// IsBlocked implements store.Blocks.
func (s *Store) IsBlocked(ctx context.Context, userID, blockedID int64) (bool, error) {
	var one int
	err := s.isBlocked.QueryRowContext(ctx, userID, blockedID).Scan(&one)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	default:
		return false, wrap("is blocked", err)
	}
}

// BlockList implements store.Blocks.
func (s *Store) BlockList(ctx context.Context, userID int64) ([]store.Block, error) {
	rows, err := s.r.QueryContext(ctx,
		"SELECT blocked_id, created_at FROM blocks WHERE user_id = ? ORDER BY created_at DESC, blocked_id DESC", userID)
	if err != nil {
		return nil, wrap("block list", err)
	}
	defer rows.Close()
	var bs []store.Block
	for rows.Next() {
		b := store.Block{UserID: userID}
		var created int64
		if err := rows.Scan(&b.BlockedID, &created); err != nil {
			return nil, wrap("block list", err)
		}
		b.CreatedAt = time.UnixMilli(created)
		bs = append(bs, b)
	}
	return bs, wrap("block list", rows.Err())
}

// Tombstones.

// pruneTables lists the tables holding tombstones: their key columns
// (owner of the list first) and how to raise the list's min version.
var pruneTables = []struct {
	table, owner, key string
	raise             string // args: version, owner
}{
	{"friendships", "user_id", "friend_id",
		"UPDATE list_versions SET min_version = MAX(min_version, ?) WHERE kind = 1 AND owner_id = ?"},
	{"user_groups", "user_id", "group_id",
		"UPDATE list_versions SET min_version = MAX(min_version, ?) WHERE kind = 2 AND owner_id = ?"},
	{"group_members", "group_id", "user_id",
		"UPDATE groups SET min_version = MAX(min_version, ?) WHERE id = ?"},
}

// PruneTombstones implements store.Tombstones.
func (s *Store) PruneTombstones(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%w: limit %d", store.ErrInvalid, limit)
	}
	cutoff := before.UnixMilli()
	n := 0
	err := s.write(ctx, "prune tombstones", func(tx *sql.Tx) error {
		n = 0
		for _, t := range pruneTables {
			if n == limit {
				break
			}
			type key struct{ owner, id int64 }
			var keys []key
			highest := make(map[int64]int64) // owner -> highest pruned version
			rows, err := tx.QueryContext(ctx, "SELECT "+t.owner+", "+t.key+", version FROM "+t.table+
				" WHERE status = 1 AND updated_at < ? ORDER BY updated_at LIMIT ?", cutoff, limit-n)
			if err != nil {
				return err
			}
			for rows.Next() {
				var k key
				var v int64
				if err := rows.Scan(&k.owner, &k.id, &v); err != nil {
					rows.Close()
					return err
				}
				keys = append(keys, k)
				highest[k.owner] = max(highest[k.owner], v)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			del, err := tx.PrepareContext(ctx, "DELETE FROM "+t.table+" WHERE "+t.owner+" = ? AND "+t.key+" = ? AND status = 1")
			if err != nil {
				return err
			}
			defer del.Close()
			for _, k := range keys {
				if _, err := del.ExecContext(ctx, k.owner, k.id); err != nil {
					return err
				}
			}
			for owner, v := range highest {
				if _, err := tx.ExecContext(ctx, t.raise, v, owner); err != nil {
					return err
				}
			}
			n += len(keys)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

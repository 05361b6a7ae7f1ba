package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/goimdev/goim/internal/store"
)

const requestCols = "id, from_user, to_user, message, status, created_at, updated_at"

func scanRequest(r rowScanner) (store.FriendRequest, error) {
	var q store.FriendRequest
	err := r.Scan(&q.ID, &q.FromUser, &q.ToUser, &q.Message, &q.Status, &q.CreatedAt, &q.UpdatedAt)
	return q, err
}

const friendCols = "user_id, friend_id, remark, status, version, created_at, updated_at"

func scanFriend(r rowScanner) (store.Friend, error) {
	var f store.Friend
	var status int
	err := r.Scan(&f.UserID, &f.FriendID, &f.Remark, &status, &f.Version, &f.CreatedAt, &f.UpdatedAt)
	f.Deleted = status != statusLive
	return f, err
}

// CreateFriendRequest implements store.Friends. Both users' friend lists
// are locked, which serialises every change between the two users: the
// "already friends" check and the one pending request per direction hold
// under concurrency (the unique key on pending requests backs the latter).
func (s *Store) CreateFriendRequest(ctx context.Context, from, to int64, message string) (*store.FriendRequest, bool, error) {
	if from == to {
		return nil, false, fmt.Errorf("%w: friend request to oneself", store.ErrInvalid)
	}
	if err := store.ValidateRequestMessage(message); err != nil {
		return nil, false, err
	}
	var (
		req    store.FriendRequest
		merged bool
	)
	err := s.inTx(ctx, "create friend request", func(tx *sql.Tx) error {
		if _, err := lockLists(ctx, tx, kindFriends, []int64{from, to}); err != nil {
			return err
		}
		if ok, err := areFriends(ctx, tx, from, to); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%w: already friends", store.ErrConflict)
		}
		at := now()
		var err error
		req, err = scanRequest(tx.QueryRowContext(ctx, "SELECT "+requestCols+
			" FROM friend_request WHERE from_user = ? AND to_user = ? AND pending = 1 FOR UPDATE", from, to))
		switch {
		case err == nil:
			merged = true
			req.Message, req.UpdatedAt = message, at
			_, err = tx.ExecContext(ctx, "UPDATE friend_request SET message = ?, updated_at = ? WHERE id = ?", message, at, req.ID)
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		merged = false
		res, err := tx.ExecContext(ctx, `INSERT INTO friend_request (from_user, to_user, message, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)`, from, to, message, store.RequestPending, at, at)
		if err != nil {
			return err
		}
		req = store.FriendRequest{FromUser: from, ToUser: to, Message: message, Status: store.RequestPending, CreatedAt: at, UpdatedAt: at}
		req.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return &req, merged, nil
}

func areFriends(ctx context.Context, q execer, userID, friendID int64) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, "SELECT 1 FROM friendship WHERE user_id = ? AND friend_id = ? AND status = 0", userID, friendID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// FriendRequest implements store.Friends.
func (s *Store) FriendRequest(ctx context.Context, id int64) (*store.FriendRequest, error) {
	r, err := scanRequest(s.db.QueryRowContext(ctx, "SELECT "+requestCols+" FROM friend_request WHERE id = ?", id))
	if err != nil {
		return nil, rowErr(err, "friend request")
	}
	return &r, nil
}

// FriendRequests implements store.Friends.
func (s *Store) FriendRequests(ctx context.Context, userID int64, limit int) (incoming, outgoing []store.FriendRequest, err error) {
	if limit <= 0 {
		return nil, nil, fmt.Errorf("%w: limit %d", store.ErrInvalid, limit)
	}
	const q = "SELECT " + requestCols + " FROM friend_request WHERE %s = ? ORDER BY updated_at DESC, id DESC LIMIT ?"
	incoming, err = queryAll(ctx, s.db, scanRequest, fmt.Sprintf(q, "to_user"), userID, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("mysql: friend requests: %w", err)
	}
	outgoing, err = queryAll(ctx, s.db, scanRequest, fmt.Sprintf(q, "from_user"), userID, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("mysql: friend requests: %w", err)
	}
	return incoming, outgoing, nil
}

// ResolveFriendRequest implements store.Friends.
func (s *Store) ResolveFriendRequest(ctx context.Context, id int64, accept bool) (*store.FriendRequest, error) {
	var req store.FriendRequest
	err := s.inTx(ctx, "resolve friend request", func(tx *sql.Tx) error {
		// Learn the two users, lock their lists (the order every friend
		// transaction uses), then read the request again under the lock.
		var from, to int64
		err := tx.QueryRowContext(ctx, "SELECT from_user, to_user FROM friend_request WHERE id = ?", id).Scan(&from, &to)
		if err != nil {
			return rowErr(err, "friend request")
		}
		vs, err := lockLists(ctx, tx, kindFriends, []int64{from, to})
		if err != nil {
			return err
		}
		req, err = scanRequest(tx.QueryRowContext(ctx, "SELECT "+requestCols+" FROM friend_request WHERE id = ? FOR UPDATE", id))
		if err != nil {
			return rowErr(err, "friend request")
		}
		if req.Status != store.RequestPending {
			return fmt.Errorf("%w: friend request %d is not pending", store.ErrConflict, id)
		}
		at := now()
		req.Status, req.UpdatedAt = store.RequestRejected, at
		if accept {
			req.Status = store.RequestAccepted
		}
		if _, err := tx.ExecContext(ctx, "UPDATE friend_request SET status = ?, updated_at = ? WHERE id = ?", req.Status, at, id); err != nil {
			return err
		}
		if !accept {
			return nil
		}
		// A pending request the other way is answered by this one.
		if _, err := tx.ExecContext(ctx, "UPDATE friend_request SET status = ?, updated_at = ? WHERE from_user = ? AND to_user = ? AND pending = 1",
			store.RequestAccepted, at, to, from); err != nil {
			return err
		}
		return befriend(ctx, tx, vs, from, to, at)
	})
	if err != nil {
		return nil, err
	}
	return &req, nil
}

// befriend creates (or revives from a tombstone, with an empty remark) the
// friendship of a and b in both directions, bumping both friend lists. The
// lists must be locked (vs from lockLists).
func befriend(ctx context.Context, tx *sql.Tx, vs map[int64]int64, a, b int64, at time.Time) error {
	if ok, err := areFriends(ctx, tx, a, b); err != nil || ok {
		return err
	}
	if err := bumpLists(ctx, tx, kindFriends, []int64{a, b}, vs); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO friendship (user_id, friend_id, remark, status, version, created_at, updated_at)
		VALUES (?, ?, '', 0, ?, ?, ?), (?, ?, '', 0, ?, ?, ?)
		ON DUPLICATE KEY UPDATE remark = '', status = 0, version = VALUES(version), created_at = VALUES(created_at), updated_at = VALUES(updated_at)`,
		a, b, vs[a], at, at, b, a, vs[b], at, at)
	return err
}

// Friend implements store.Friends: one primary-key lookup.
func (s *Store) Friend(ctx context.Context, userID, friendID int64) (*store.Friend, error) {
	f, err := scanFriend(s.friend.QueryRowContext(ctx, userID, friendID))
	if err != nil {
		return nil, rowErr(err, "friend")
	}
	return &f, nil
}

// FriendChanges implements store.Friends.
func (s *Store) FriendChanges(ctx context.Context, userID, since int64) (store.Changes[store.Friend], error) {
	var c store.Changes[store.Friend]
	err := s.snapshot(ctx, "friend changes", func(tx *sql.Tx) error {
		v, minV, err := listVersion(ctx, tx, kindFriends, userID)
		if err != nil {
			return err
		}
		c.Version = v
		c.Full = fullList(since, v, minV)
		if c.Full {
			c.Items, err = queryAll(ctx, tx, scanFriend, "SELECT "+friendCols+
				" FROM friendship WHERE user_id = ? AND status = 0 ORDER BY friend_id", userID)
			return err
		}
		c.Items, err = queryAll(ctx, tx, scanFriend, "SELECT "+friendCols+
			" FROM friendship WHERE user_id = ? AND version > ? ORDER BY version, friend_id", userID, since)
		return err
	})
	return c, err
}

// SetFriendRemark implements store.Friends.
func (s *Store) SetFriendRemark(ctx context.Context, userID, friendID int64, remark string) error {
	if err := store.ValidateRemark(remark); err != nil {
		return err
	}
	return s.inTx(ctx, "set friend remark", func(tx *sql.Tx) error {
		vs, err := lockLists(ctx, tx, kindFriends, []int64{userID})
		if err != nil {
			return err
		}
		if ok, err := areFriends(ctx, tx, userID, friendID); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("%w: not friends", store.ErrNotFound)
		}
		if err := bumpLists(ctx, tx, kindFriends, []int64{userID}, vs); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE friendship SET remark = ?, version = ?, updated_at = ? WHERE user_id = ? AND friend_id = ?",
			remark, vs[userID], now(), userID, friendID)
		return err
	})
}

// DeleteFriend implements store.Friends.
func (s *Store) DeleteFriend(ctx context.Context, userID, friendID int64) error {
	return s.inTx(ctx, "delete friend", func(tx *sql.Tx) error {
		vs, err := lockLists(ctx, tx, kindFriends, []int64{userID, friendID})
		if err != nil {
			return err
		}
		if ok, err := areFriends(ctx, tx, userID, friendID); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("%w: not friends", store.ErrNotFound)
		}
		if err := bumpLists(ctx, tx, kindFriends, []int64{userID, friendID}, vs); err != nil {
			return err
		}
		at := now()
		for _, p := range [][2]int64{{userID, friendID}, {friendID, userID}} {
			if _, err := tx.ExecContext(ctx, "UPDATE friendship SET status = 1, version = ?, updated_at = ? WHERE user_id = ? AND friend_id = ?",
				vs[p[0]], at, p[0], p[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

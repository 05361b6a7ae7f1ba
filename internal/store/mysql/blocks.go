package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/goimdev/goim/internal/store"
)

// BlockUser implements store.Blocks.
func (s *Store) BlockUser(ctx context.Context, userID, blockedID int64) error {
	if userID == blockedID {
		return fmt.Errorf("%w: blocking oneself", store.ErrInvalid)
	}
	// The no-op update keeps the first created_at and, unlike INSERT
	// IGNORE, still reports an unknown user as a foreign key error.
	_, err := s.db.ExecContext(ctx, "INSERT INTO `block` (user_id, blocked_id, created_at) VALUES (?, ?, ?)"+
		" ON DUPLICATE KEY UPDATE created_at = created_at", userID, blockedID, now())
	if err != nil {
		if isForeignKeyViolation(err) {
			return fmt.Errorf("%w: user", store.ErrNotFound)
		}
		return fmt.Errorf("mysql: block user: %w", err)
	}
	return nil
}

// UnblockUser implements store.Blocks.
func (s *Store) UnblockUser(ctx context.Context, userID, blockedID int64) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM `block` WHERE user_id = ? AND blocked_id = ?", userID, blockedID); err != nil {
		return fmt.Errorf("mysql: unblock user: %w", err)
	}
	return nil
}

// IsBlocked implements store.Blocks: one primary-key lookup.
func (s *Store) IsBlocked(ctx context.Context, userID, blockedID int64) (bool, error) {
	var one int
	err := s.isBlocked.QueryRowContext(ctx, userID, blockedID).Scan(&one)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	default:
		return false, fmt.Errorf("mysql: is blocked: %w", err)
	}
}

// BlockList implements store.Blocks.
func (s *Store) BlockList(ctx context.Context, userID int64) ([]store.Block, error) {
	bs, err := queryAll(ctx, s.db, func(r rowScanner) (store.Block, error) {
		b := store.Block{UserID: userID}
		err := r.Scan(&b.BlockedID, &b.CreatedAt)
		return b, err
	}, "SELECT blocked_id, created_at FROM `block` WHERE user_id = ? ORDER BY created_at DESC, blocked_id DESC", userID)
	if err != nil {
		return nil, fmt.Errorf("mysql: block list: %w", err)
	}
	return bs, nil
}

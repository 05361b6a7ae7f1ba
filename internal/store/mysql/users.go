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

// maxInArgs bounds the ids of one IN (...) query; larger lookups are split.
const maxInArgs = 500

const userCols = "id, username, password_hash, nickname, avatar, created_at"

func scanUser(r rowScanner) (*store.User, error) {
	var u store.User
	if err := r.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.Nickname, &u.Avatar, &u.CreatedAt); err != nil {
		return nil, err
	}
	return &u, nil
}

// CreateUser implements store.Users.
func (s *Store) CreateUser(ctx context.Context, u *store.User) (int64, error) {
	if err := store.ValidateUser(u); err != nil {
		return 0, err
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	u.CreatedAt = time.UnixMilli(u.CreatedAt.UnixMilli())
	at := ms(u.CreatedAt)
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO user (username, password_hash, nickname, avatar, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
		u.Username, u.PasswordHash, u.Nickname, u.Avatar, at, at)
	if err != nil {
		if isDuplicate(err) {
			return 0, store.ErrUsernameTaken
		}
		return 0, fmt.Errorf("mysql: create user: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("mysql: create user: %w", err)
	}
	u.ID = id
	return id, nil
}

// UserByUsername implements store.Users.
func (s *Store) UserByUsername(ctx context.Context, username string) (*store.User, error) {
	u, err := scanUser(s.userByName.QueryRowContext(ctx, username))
	return u, rowErr(err, "user by username")
}

// UserByID implements store.Users.
func (s *Store) UserByID(ctx context.Context, id int64) (*store.User, error) {
	u, err := scanUser(s.userByID.QueryRowContext(ctx, id))
	return u, rowErr(err, "user by id")
}

// rowErr maps sql.ErrNoRows to store.ErrNotFound and wraps other errors.
func rowErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	default:
		return fmt.Errorf("mysql: %s: %w", what, err)
	}
}

// UsersByIDs implements store.Users.
func (s *Store) UsersByIDs(ctx context.Context, ids []int64) (map[int64]*store.User, error) {
	uniq := sortedUnique(ids)
	res := make(map[int64]*store.User, len(uniq))
	for chunk := range slices.Chunk(uniq, maxInArgs) {
		q := "SELECT " + userCols + " FROM user WHERE id IN (" + placeholders(len(chunk)) + ")"
		if err := s.queryUsers(ctx, q, int64Args(chunk), res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (s *Store) queryUsers(ctx context.Context, q string, args []any, res map[int64]*store.User) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("mysql: users by ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return fmt.Errorf("mysql: users by ids: %w", err)
		}
		res[u.ID] = u
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mysql: users by ids: %w", err)
	}
	return nil
}

// UpdateProfile implements store.Users.
func (s *Store) UpdateProfile(ctx context.Context, userID int64, p store.ProfileUpdate) error {
	if err := store.ValidateProfile(p); err != nil {
		return err
	}
	// updated_at always changes, so a found row always counts as affected.
	sets := []string{"updated_at = ?"}
	args := []any{now()}
	if p.Nickname != nil {
		sets = append(sets, "nickname = ?")
		args = append(args, *p.Nickname)
	}
	if p.Avatar != nil {
		sets = append(sets, "avatar = ?")
		args = append(args, *p.Avatar)
	}
	args = append(args, userID)
	return s.updateUser(ctx, "UPDATE user SET "+strings.Join(sets, ", ")+" WHERE id = ?", args, "update profile")
}

// SetPasswordHash implements store.Users.
func (s *Store) SetPasswordHash(ctx context.Context, userID int64, hash string) error {
	if hash == "" || len(hash) > store.MaxPasswordHashLen {
		return fmt.Errorf("%w: password hash length %d", store.ErrInvalid, len(hash))
	}
	return s.updateUser(ctx, "UPDATE user SET password_hash = ?, updated_at = ? WHERE id = ?",
		[]any{hash, now(), userID}, "set password hash")
}

// updateUser runs an UPDATE of one user row. Two updates within the same
// millisecond may change nothing (MySQL counts changed rows, not matched
// ones), so a zero count is confirmed by a lookup before ErrNotFound.
func (s *Store) updateUser(ctx context.Context, q string, args []any, what string) error {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("mysql: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("mysql: %s: %w", what, err)
	}
	if n > 0 {
		return nil
	}
	return s.mustExist(ctx, s.db, "SELECT 1 FROM user WHERE id = ?", args[len(args)-1])
}

// mustExist returns nil if q finds a row, ErrNotFound if not.
func (s *Store) mustExist(ctx context.Context, q execer, query string, args ...any) error {
	var one int
	return rowErr(q.QueryRowContext(ctx, query, args...).Scan(&one), "lookup")
}

// UpsertDevice implements store.Devices.
func (s *Store) UpsertDevice(ctx context.Context, d store.Device) error {
	if err := store.ValidateDevice(d); err != nil {
		return err
	}
	if d.LastLoginAt.IsZero() {
		d.LastLoginAt = time.Now()
	}
	at := ms(d.LastLoginAt)
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO device (user_id, device_id, platform, created_at, last_login_at) VALUES (?, ?, ?, ?, ?)
		 ON DUPLICATE KEY UPDATE platform = VALUES(platform), last_login_at = VALUES(last_login_at)`,
		d.UserID, d.DeviceID, d.Platform, at, at)
	if err != nil {
		if isForeignKeyViolation(err) {
			return store.ErrNotFound
		}
		return fmt.Errorf("mysql: upsert device: %w", err)
	}
	return nil
}

// Devices implements store.Devices.
func (s *Store) Devices(ctx context.Context, userID int64) ([]store.Device, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT device_id, platform, last_login_at FROM device WHERE user_id = ?
		 ORDER BY last_login_at DESC, device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("mysql: devices: %w", err)
	}
	defer rows.Close()
	var ds []store.Device
	for rows.Next() {
		d := store.Device{UserID: userID}
		if err := rows.Scan(&d.DeviceID, &d.Platform, &d.LastLoginAt); err != nil {
			return nil, fmt.Errorf("mysql: devices: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysql: devices: %w", err)
	}
	return ds, nil
}

// sortedUnique returns ids sorted without duplicates (a new slice).
func sortedUnique(ids []int64) []int64 {
	u := slices.Clone(ids)
	slices.Sort(u)
	return slices.Compact(u)
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return "?" + strings.Repeat(",?", n-1)
}

func int64Args(ids []int64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args
}

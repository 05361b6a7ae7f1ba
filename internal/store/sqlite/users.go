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

// maxInArgs bounds the ids of one IN (...) query; larger lookups are split.
const maxInArgs = 500

const userCols = "id, username, password_hash, nickname, avatar, created_at"

type rowScanner interface{ Scan(dest ...any) error }

func scanUser(r rowScanner) (*store.User, error) {
	var u store.User
	var created int64
	if err := r.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.Nickname, &u.Avatar, &created); err != nil {
		return nil, err
	}
	u.CreatedAt = time.UnixMilli(created)
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
	ms := u.CreatedAt.UnixMilli()
	var id int64
	err := s.w.QueryRowContext(ctx,
		`INSERT INTO users (username, password_hash, nickname, avatar, created_at, updated_at)
		 VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		u.Username, u.PasswordHash, u.Nickname, u.Avatar, ms, ms).Scan(&id)
	if err != nil {
		if isUniqueViolation(err) {
			return 0, store.ErrUsernameTaken
		}
		return 0, fmt.Errorf("sqlite: create user: %w", err)
	}
	u.ID = id
	return id, nil
}

// UserByUsername implements store.Users.
func (s *Store) UserByUsername(ctx context.Context, username string) (*store.User, error) {
	u, err := scanUser(s.userByName.QueryRowContext(ctx, username))
	return u, userErr(err, "user by username")
}

// UserByID implements store.Users.
func (s *Store) UserByID(ctx context.Context, id int64) (*store.User, error) {
	u, err := scanUser(s.userByID.QueryRowContext(ctx, id))
	return u, userErr(err, "user by id")
}

func userErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	default:
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
}

// UsersByIDs implements store.Users.
func (s *Store) UsersByIDs(ctx context.Context, ids []int64) (map[int64]*store.User, error) {
	uniq := slices.Clone(ids)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	res := make(map[int64]*store.User, len(uniq))
	for chunk := range slices.Chunk(uniq, maxInArgs) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := "SELECT " + userCols + " FROM users WHERE id IN (?" + strings.Repeat(",?", len(chunk)-1) + ")"
		if err := s.queryUsers(ctx, q, args, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (s *Store) queryUsers(ctx context.Context, q string, args []any, res map[int64]*store.User) error {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("sqlite: users by ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return fmt.Errorf("sqlite: users by ids: %w", err)
		}
		res[u.ID] = u
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: users by ids: %w", err)
	}
	return nil
}

// UpdateProfile implements store.Users.
func (s *Store) UpdateProfile(ctx context.Context, userID int64, p store.ProfileUpdate) error {
	if err := store.ValidateProfile(p); err != nil {
		return err
	}
	sets := []string{"updated_at = ?"}
	args := []any{time.Now().UnixMilli()}
	if p.Nickname != nil {
		sets = append(sets, "nickname = ?")
		args = append(args, *p.Nickname)
	}
	if p.Avatar != nil {
		sets = append(sets, "avatar = ?")
		args = append(args, *p.Avatar)
	}
	args = append(args, userID)
	return s.updateUser(ctx, "UPDATE users SET "+strings.Join(sets, ", ")+" WHERE id = ?", args, "update profile")
}

// SetPasswordHash implements store.Users.
func (s *Store) SetPasswordHash(ctx context.Context, userID int64, hash string) error {
	if hash == "" || len(hash) > store.MaxPasswordHashLen {
		return fmt.Errorf("%w: password hash length %d", store.ErrInvalid, len(hash))
	}
	return s.updateUser(ctx, "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
		[]any{hash, time.Now().UnixMilli(), userID}, "set password hash")
}

func (s *Store) updateUser(ctx context.Context, q string, args []any, what string) error {
	res, err := s.w.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// UpsertDevice implements store.Devices.
func (s *Store) UpsertDevice(ctx context.Context, d store.Device) error {
	if err := store.ValidateDevice(d); err != nil {
		return err
	}
	if d.LastLoginAt.IsZero() {
		d.LastLoginAt = time.Now()
	}
	ms := d.LastLoginAt.UnixMilli()
	_, err := s.w.ExecContext(ctx,
		`INSERT INTO devices (user_id, device_id, platform, created_at, last_login_at) VALUES (?, ?, ?, ?, ?)
		 ON CONFLICT (user_id, device_id) DO UPDATE SET platform = excluded.platform, last_login_at = excluded.last_login_at`,
		d.UserID, d.DeviceID, d.Platform, ms, ms)
	if err != nil {
		if isForeignKeyViolation(err) {
			return store.ErrNotFound
		}
		return fmt.Errorf("sqlite: upsert device: %w", err)
	}
	return nil
}

// Devices implements store.Devices.
func (s *Store) Devices(ctx context.Context, userID int64) ([]store.Device, error) {
	rows, err := s.r.QueryContext(ctx,
		`SELECT device_id, platform, last_login_at FROM devices WHERE user_id = ?
		 ORDER BY last_login_at DESC, device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: devices: %w", err)
	}
	defer rows.Close()
	var ds []store.Device
	for rows.Next() {
		d := store.Device{UserID: userID}
		var last int64
		if err := rows.Scan(&d.DeviceID, &d.Platform, &last); err != nil {
			return nil, fmt.Errorf("sqlite: devices: %w", err)
		}
		d.LastLoginAt = time.UnixMilli(last)
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: devices: %w", err)
	}
	return ds, nil
}

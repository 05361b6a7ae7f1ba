// Package store is GoIM's store of record: users, devices, friends, block
// lists, groups, messages and conversation cursors. It defines the interfaces the domain code
// uses and the sentinel errors every implementation returns; the
// implementations live in sub-packages (sqlite for the one-process server,
// MySQL for the distributed mode), and storetest is the conformance suite
// they all pass.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Sentinel errors, compared with errors.Is.
var (
	// ErrNotFound means the requested row does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrUsernameTaken means CreateUser found the username in use.
	ErrUsernameTaken = errors.New("store: username taken")
	// ErrInvalid means an argument breaks a column limit below.
	ErrInvalid = errors.New("store: invalid argument")
)

// Column limits, in bytes, that every implementation enforces (the MySQL
// schema sizes its columns to them). The domain code applies stricter
// rules (e.g. the username alphabet) before calling the store.
const (
	MaxUsernameLen     = 32
	MaxPasswordHashLen = 255
	MaxNicknameLen     = 255 // 64 characters of up to 4 bytes
	MaxAvatarLen       = 1024
	MaxDeviceIDLen     = 128
	MaxPlatformLen     = 16
)

// User is an account.
type User struct {
	ID           int64
	Username     string
	PasswordHash string
	Nickname     string
	Avatar       string
	CreatedAt    time.Time // millisecond precision
}

// Device is a device a user logged in from.
type Device struct {
	UserID      int64
	DeviceID    string
	Platform    string
	LastLoginAt time.Time // millisecond precision
}

// ProfileUpdate changes the non-nil fields of a profile.
type ProfileUpdate struct {
	Nickname *string
	Avatar   *string
}

// Users stores accounts.
type Users interface {
	// CreateUser inserts u and returns its new id, also set in u.ID. A zero
	// u.CreatedAt is set to now. ErrUsernameTaken if the username is in use.
	CreateUser(ctx context.Context, u *User) (int64, error)
	// UserByUsername returns the user with this exact username, or ErrNotFound.
	UserByUsername(ctx context.Context, username string) (*User, error)
	// UserByID returns the user with this id, or ErrNotFound.
	UserByID(ctx context.Context, id int64) (*User, error)
	// UsersByIDs returns the users found among ids, by id; unknown ids are
	// absent from the map (no error). Duplicates are allowed.
	UsersByIDs(ctx context.Context, ids []int64) (map[int64]*User, error)
	// UpdateProfile changes the non-nil fields of p; ErrNotFound for an
	// unknown user.
	UpdateProfile(ctx context.Context, userID int64, p ProfileUpdate) error
	// SetPasswordHash replaces a user's password hash; ErrNotFound for an
	// unknown user.
	SetPasswordHash(ctx context.Context, userID int64, hash string) error
}

// Devices stores the devices users log in from.
type Devices interface {
	// UpsertDevice records d, replacing the platform and last login time
	// of the same (UserID, DeviceID). ErrNotFound for an unknown user.
	UpsertDevice(ctx context.Context, d Device) error
	// Devices returns a user's devices, most recent login first (none for
	// an unknown user).
	Devices(ctx context.Context, userID int64) ([]Device, error)
}

// Store is a complete store of record.
type Store interface {
	Users
	Devices
	Friends
	Blocks
	Groups
	Tombstones
	Messages
	// Migrate applies pending schema migrations (also done when opening).
	Migrate(ctx context.Context) error
	// Close releases the store's connections.
	Close() error
}

// ValidateUser checks u against the column limits; errors wrap ErrInvalid.
func ValidateUser(u *User) error {
	switch {
	case u == nil:
		return fmt.Errorf("%w: nil user", ErrInvalid)
	case u.Username == "" || len(u.Username) > MaxUsernameLen:
		return fmt.Errorf("%w: username length %d", ErrInvalid, len(u.Username))
	case u.PasswordHash == "" || len(u.PasswordHash) > MaxPasswordHashLen:
		return fmt.Errorf("%w: password hash length %d", ErrInvalid, len(u.PasswordHash))
	}
	return validateProfile(u.Nickname, u.Avatar)
}

// ValidateProfile checks the non-nil fields of p; errors wrap ErrInvalid.
func ValidateProfile(p ProfileUpdate) error {
	var nick, avatar string
	if p.Nickname != nil {
		nick = *p.Nickname
	}
	if p.Avatar != nil {
		avatar = *p.Avatar
	}
	return validateProfile(nick, avatar)
}

func validateProfile(nick, avatar string) error {
	if len(nick) > MaxNicknameLen || !utf8.ValidString(nick) {
		return fmt.Errorf("%w: nickname", ErrInvalid)
	}
	if len(avatar) > MaxAvatarLen || !utf8.ValidString(avatar) {
		return fmt.Errorf("%w: avatar", ErrInvalid)
	}
	return nil
}

// ValidateDevice checks d against the column limits; errors wrap ErrInvalid.
func ValidateDevice(d Device) error {
	switch {
	case d.UserID <= 0:
		return fmt.Errorf("%w: user id %d", ErrInvalid, d.UserID)
	case d.DeviceID == "" || len(d.DeviceID) > MaxDeviceIDLen || !utf8.ValidString(d.DeviceID):
		return fmt.Errorf("%w: device id", ErrInvalid)
	case len(d.Platform) > MaxPlatformLen || !utf8.ValidString(d.Platform):
		return fmt.Errorf("%w: platform", ErrInvalid)
	}
	return nil
}

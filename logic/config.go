package logic

import (
	"errors"
	"fmt"
	"time"

	"github.com/goimdev/goim/internal/auth"
)

// Config configures the logic service. Zero values take the default
// documented on each field (see DefaultConfig).
type Config struct {
	// Node names this logic instance in logs. Default "logic".
	Node string `yaml:"node"`
	// HeartbeatInterval is announced to clients in AuthReply heartbeat_s
	// (whole seconds, at least 1); comets close a connection silent for 3x
	// this. Default 30s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// TokenTTL is the lifetime of the JWTs issued by login. Default 168h
	// (7 days): mobile apps stay signed in for a week of inactivity; there
	// is no refresh token yet, the app logs in again.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// AdminKey authenticates the goim push API (Authorization: Bearer
	// <key>). Empty (the default): the push API serves loopback clients only.
	AdminKey string `yaml:"admin_key"`
	// InsecureMidAuth accepts goim's legacy Op 7 body {"mid": N, ...}
	// without a token: anyone can connect as any user. For benchmarks with
	// goim's own tools only. Default false; a WARN is logged when on.
	InsecureMidAuth bool `yaml:"insecure_mid_auth"`
	// MaxRequestBody bounds HTTP request bodies (JSON and push payloads);
	// larger requests get 413 too_large. Default 1 MiB.
	MaxRequestBody int64 `yaml:"max_request_body"`
	// MaxPushTargets bounds the keys, mids or rooms named by one push API
	// request. Default 10000.
	MaxPushTargets int `yaml:"max_push_targets"`
	// MaxAccepts bounds the business ops of an AuthReq's accepts. Default 256.
	MaxAccepts int `yaml:"max_accepts"`
	// Password sets the argon2id parameters of new password hashes (zero
	// fields: auth.DefaultPasswordParams).
	Password auth.PasswordParams `yaml:"password"`
	// DefaultMaxMembers is the max_members of a group created without one.
	// Default 500.
	DefaultMaxMembers int `yaml:"default_max_members"`
	// MaxMembersCeiling is the largest max_members a group may have (set at
	// creation or by its owner). Default 2000; at least DefaultMaxMembers.
	MaxMembersCeiling int `yaml:"max_members_ceiling"`
	// FriendRequestLimit is how many friend requests one user may send per
	// FriendRequestWindow (per logic process); more get 429 rate_limited.
	// Default 30; negative disables the limit.
	FriendRequestLimit int `yaml:"friend_request_limit"`
	// FriendRequestWindow is the window of FriendRequestLimit. Default 1h.
	FriendRequestWindow time.Duration `yaml:"friend_request_window"`
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		Node:              "logic",
		HeartbeatInterval: 30 * time.Second,
		TokenTTL:          7 * 24 * time.Hour,
		MaxRequestBody:    1 << 20,
		MaxPushTargets:    10000,
		MaxAccepts:        256,
		Password:          auth.DefaultPasswordParams(),

		DefaultMaxMembers:   500,
		MaxMembersCeiling:   2000,
		FriendRequestLimit:  30,
		FriendRequestWindow: time.Hour,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Node == "" {
		c.Node = d.Node
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = d.TokenTTL
	}
	if c.MaxRequestBody <= 0 {
		c.MaxRequestBody = d.MaxRequestBody
	}
	if c.MaxPushTargets <= 0 {
		c.MaxPushTargets = d.MaxPushTargets
	}
	if c.MaxAccepts <= 0 {
		c.MaxAccepts = d.MaxAccepts
	}
	if c.DefaultMaxMembers <= 0 {
		c.DefaultMaxMembers = d.DefaultMaxMembers
	}
	if c.MaxMembersCeiling <= 0 {
		c.MaxMembersCeiling = max(d.MaxMembersCeiling, c.DefaultMaxMembers)
	}
	if c.FriendRequestLimit == 0 {
		c.FriendRequestLimit = d.FriendRequestLimit
	}
	if c.FriendRequestWindow <= 0 {
		c.FriendRequestWindow = d.FriendRequestWindow
	}
	return c
}

func (c Config) validate() error {
	if c.HeartbeatInterval < time.Second {
		return errors.New("logic: heartbeat_interval below 1s")
	}
	if c.TokenTTL < time.Minute {
		return errors.New("logic: token_ttl below 1m")
	}
	if c.MaxMembersCeiling < c.DefaultMaxMembers {
		return errors.New("logic: max_members_ceiling below default_max_members")
	}
	if c.MaxMembersCeiling > maxMembersLimit {
		return fmt.Errorf("logic: max_members_ceiling above %d", maxMembersLimit)
	}
	return nil
}

package logic

import (
	"errors"
	"fmt"
	"time"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/snowflake"
	"github.com/goimdev/goim/internal/store"
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

	// Messaging (docs/messaging.md).

	// RequireFriendship refuses one-to-one messages between users who are
	// not friends (not_friends). Default false: anyone not blocked may
	// write to anyone.
	RequireFriendship bool `yaml:"require_friendship"`
	// LargeGroupThreshold is the member count above which a group uses read
	// diffusion: a message updates no member's conversation index on write
	// (members' unread counts are computed when they read). Groups up to it
	// get write diffusion of the index. Every online member gets the event
	// either way. Default 200.
	LargeGroupThreshold int `yaml:"large_group_threshold"`
	// RecallWindow is how long after sending its sender may recall a
	// message (group admins and the owner may recall any time). Default 2m.
	RecallWindow time.Duration `yaml:"recall_window"`
	// MaxContentBytes bounds a message's content (the JSON object);
	// larger gets too_large. Default 32 KiB, at most 64 KiB.
	MaxContentBytes int `yaml:"max_content_bytes"`
	// SendRate is the sustained messages per second one user may send
	// (per logic process; a token bucket of SendBurst); more get
	// rate_limited. Default 20; negative disables the limit.
	SendRate float64 `yaml:"send_rate"`
	// SendBurst is the bucket size of SendRate. Default 50.
	SendBurst int `yaml:"send_burst"`
	// TypingInterval is the least time between two typing events of one
	// user in one conversation; typing packets in between are dropped.
	// Default 2s.
	TypingInterval time.Duration `yaml:"typing_interval"`
	// CommitMaxBatch bounds the messages of one group commit (one store
	// transaction). Default 512.
	CommitMaxBatch int `yaml:"commit_max_batch"`
	// CommitTimeout bounds one group commit. Default 5s.
	CommitTimeout time.Duration `yaml:"commit_timeout"`
	// PersistOnBus (set by `goim logic`, the distributed mode) hands every
	// validated message to the bus (bus.TopicMsg) instead of committing
	// it: the jobs persist it, publish its events and push its SendAck
	// (persist.go). Default false: this process commits.
	PersistOnBus bool `yaml:"-"`
	// SnowflakeNode is this logic process's Snowflake node id (0..1023),
	// unique among the running logic processes: msg ids are unique only
	// if no two processes share it. Default 0.
	SnowflakeNode int64 `yaml:"snowflake_node"`
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

		LargeGroupThreshold: 200,
		RecallWindow:        2 * time.Minute,
		MaxContentBytes:     32 << 10,
		SendRate:            20,
		SendBurst:           50,
		TypingInterval:      2 * time.Second,
		CommitMaxBatch:      512,
		CommitTimeout:       5 * time.Second,
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
	if c.LargeGroupThreshold <= 0 {
		c.LargeGroupThreshold = d.LargeGroupThreshold
	}
	if c.RecallWindow <= 0 {
		c.RecallWindow = d.RecallWindow
	}
	if c.MaxContentBytes <= 0 {
		c.MaxContentBytes = d.MaxContentBytes
	}
	if c.SendRate == 0 {
		c.SendRate = d.SendRate
	}
	if c.SendBurst <= 0 {
		c.SendBurst = d.SendBurst
	}
	if c.TypingInterval <= 0 {
		c.TypingInterval = d.TypingInterval
	}
	if c.CommitMaxBatch <= 0 {
		c.CommitMaxBatch = d.CommitMaxBatch
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = d.CommitTimeout
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
	if c.MaxContentBytes > store.MaxContentLen {
		return fmt.Errorf("logic: max_content_bytes above %d", store.MaxContentLen)
	}
	if c.CommitMaxBatch > store.MaxAppendBatch {
		return fmt.Errorf("logic: commit_max_batch above %d", store.MaxAppendBatch)
	}
	if c.SnowflakeNode < 0 || c.SnowflakeNode > snowflake.MaxNode {
		return fmt.Errorf("logic: snowflake_node outside 0..%d", snowflake.MaxNode)
	}
	if c.MaxMembersCeiling > maxMembersLimit {
		return fmt.Errorf("logic: max_members_ceiling above %d", maxMembersLimit)
	}
	return nil
}

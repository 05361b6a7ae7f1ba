package logic

import (
	"errors"
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
	return c
}

func (c Config) validate() error {
	if c.HeartbeatInterval < time.Second {
		return errors.New("logic: heartbeat_interval below 1s")
	}
	if c.TokenTTL < time.Minute {
		return errors.New("logic: token_ttl below 1m")
	}
	return nil
}

// Package unread mirrors users' unread counts (per conversation, and the
// total over the conversations that are not muted) in Redis, so that the
// conversation list does not recount them in the store of record on every
// read (issue 4 item 9). The store stays the truth: a user's counters are
// rebuilt from it when they are missing (never written, expired, evicted,
// or Redis was flushed), so losing Redis loses nothing, only speed.
//
// Keys (P: the prefix; the user id is the Redis Cluster hash tag):
//
//	P u:{<user>}   hash: "t" the total over unmuted conversations, and per
//	               conversation "c:<conv>" its count, "s:<conv>" the seq up
//	               to which the count is accounted, "m:<conv>" present when
//	               muted
//	P b:{<user>}   a rebuild in progress (its token)
//
// How the mirror stays exact:
//   - Written: after a commit, each participant of each stored message is
//     told (Committed): the count moves only when the message's seq is
//     above the conversation's accounted seq, so a rebuild snapshot that
//     already counted the message, or a read cursor past it, is never
//     counted twice. A conversation the hash does not know gets a field
//     only when the message is its first (seq 1); otherwise the user's
//     hash is dropped and rebuilt (the store's entry knows the history).
//   - Read: MarkRead's exact answer (unread at max_seq) replaces the
//     conversation's count (Read); if the mirror is already past that
//     max_seq, the hash is dropped instead.
//   - Muting, recalls and anything else that changes counts in bulk drop
//     the users' hashes (Invalidate).
//   - Rebuild: a token marks the rebuild before the store is read; any
//     write for the user in the meantime deletes the token, and the
//     snapshot is stored only if the token survived (else it is only
//     answered, and the next read rebuilds again).
package unread

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/store"
)

// Source is the store the counters are rebuilt from.
type Source interface {
	ConversationsAfter(ctx context.Context, userID int64, after store.ConversationCursor, limit int) ([]store.UserConversation, error)
}

// Config configures a Redis mirror. Zero values take the default
// documented on each field.
type Config struct {
	// Prefix starts every key; no '{' or '}'. Default "goim:unread:".
	Prefix string `yaml:"prefix"`
	// TTL is how long a user's counters live after their last rebuild:
	// idle users leave Redis by themselves. Default 24h.
	TTL time.Duration `yaml:"ttl"`
	// BuildTimeout bounds one rebuild (its token expires then). Default 10s.
	BuildTimeout time.Duration `yaml:"build_timeout"`
	// Logger receives failures. Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Prefix: "goim:unread:", TTL: 24 * time.Hour, BuildTimeout: 10 * time.Second, Logger: slog.Default()}
}

// Entry is one stored message as the mirror needs it.
type Entry struct {
	ConversationID string
	Seq            int64
	SenderID       int64
	// Counts: the message counts as unread for the participants but its
	// sender (a chat message, not recalled).
	Counts bool
	// Users are the participants whose counters the message concerns
	// (the sender included: its accounted seq moves too).
	Users []int64
}

// Redis is the Redis mirror. It is safe for concurrent use.
type Redis struct {
	c      redis.UniversalClient
	src    Source
	prefix string
	ttl    time.Duration
	build  time.Duration
	log    *slog.Logger
}

// New returns a mirror on c (owned by the caller) rebuilt from src.
func New(c redis.UniversalClient, src Source, cfg Config) (*Redis, error) {
	d := DefaultConfig()
	if cfg.Prefix == "" {
		cfg.Prefix = d.Prefix
	}
	if cfg.TTL <= 0 {
		cfg.TTL = d.TTL
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = d.BuildTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = d.Logger
	}
	if c == nil || src == nil {
		return nil, errors.New("unread: nil redis client or source")
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("unread: prefix %q contains a brace", cfg.Prefix)
	}
	return &Redis{c: c, src: src, prefix: cfg.Prefix, ttl: cfg.TTL, build: cfg.BuildTimeout,
		log: cfg.Logger.With("component", "unread")}, nil
}

func (r *Redis) keys(user int64) []string {
	u := strconv.FormatInt(user, 10)
	return []string{r.prefix + "u:{" + u + "}", r.prefix + "b:{" + u + "}"}
}

// incrScript: KEYS hash, build; ARGV conv, seq, counts (0/1), is sender (0/1).
var incrScript = redis.NewScript(`
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local seq = tonumber(ARGV[2])
local s = redis.call('HGET', KEYS[1], 's:' .. ARGV[1])
if s == false then
  if seq ~= 1 then redis.call('DEL', KEYS[1]) return -1 end
  s = 0
end
if seq <= tonumber(s) then return 0 end
redis.call('HSET', KEYS[1], 's:' .. ARGV[1], seq)
if ARGV[3] == '1' and ARGV[4] == '0' then
  redis.call('HINCRBY', KEYS[1], 'c:' .. ARGV[1], 1)
  if redis.call('HEXISTS', KEYS[1], 'm:' .. ARGV[1]) == 0 then
    redis.call('HINCRBY', KEYS[1], 't', 1)
  end
end
return 1
`)

// readScript: KEYS hash, build; ARGV conv, unread, max seq.
var readScript = redis.NewScript(`
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local s = tonumber(redis.call('HGET', KEYS[1], 's:' .. ARGV[1]) or '0')
if s > tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) return -1 end
local old = tonumber(redis.call('HGET', KEYS[1], 'c:' .. ARGV[1]) or '0')
redis.call('HSET', KEYS[1], 'c:' .. ARGV[1], ARGV[2], 's:' .. ARGV[1], ARGV[3])
if redis.call('HEXISTS', KEYS[1], 'm:' .. ARGV[1]) == 0 then
  redis.call('HINCRBY', KEYS[1], 't', tonumber(ARGV[2]) - old)
end
return 1
`)

// getScript: KEYS hash; ARGV conversations. Returns false when the hash is
// missing, else {total, counts...}.
var getScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local out = {redis.call('HGET', KEYS[1], 't') or '0'}
for i = 1, #ARGV do
  out[#out + 1] = redis.call('HGET', KEYS[1], 'c:' .. ARGV[i]) or '0'
end
return out
`)

// finishScript: KEYS hash, build; ARGV token, ttl ms, then field/value
// pairs. Stores the snapshot only if the rebuild's token survived.
var finishScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// Committed accounts stored messages (in commit order). Errors are
// logged: the users' hashes are dropped when possible.
func (r *Redis) Committed(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	err := r.pipelined(ctx, incrScript, func(p redis.Pipeliner) {
		for _, e := range entries {
			counts := "0"
			if e.Counts {
				counts = "1"
			}
			seq := strconv.FormatInt(e.Seq, 10)
			for _, u := range e.Users {
				sender := "0"
				if u == e.SenderID {
					sender = "1"
				}
				incrScript.EvalSha(ctx, p, r.keys(u), e.ConversationID, seq, counts, sender)
			}
		}
	})
	if err != nil {
		var users []int64
		for _, e := range entries {
			users = append(users, e.Users...)
		}
		r.dropAfterError(ctx, "committed", err, users)
		return err
	}
	return nil
}

// Read sets user's count of conv to unread, exact at maxSeq (MarkRead's
// answer).
func (r *Redis) Read(ctx context.Context, user int64, conv string, unread, maxSeq int64) error {
	err := r.pipelined(ctx, readScript, func(p redis.Pipeliner) {
		readScript.EvalSha(ctx, p, r.keys(user), conv, unread, maxSeq)
	})
	if err != nil {
		r.dropAfterError(ctx, "read", err, []int64{user})
	}
	return err
}

// Invalidate drops users' counters (rebuilt when next read).
func (r *Redis) Invalidate(ctx context.Context, users ...int64) error {
	if len(users) == 0 {
		return nil
	}
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, u := range users {
			p.Del(ctx, r.keys(u)...)
		}
		return nil
	})
	if err != nil {
		r.log.Error("unread counters not invalidated: they may be wrong until they expire", "users", len(users), "err", err)
		return fmt.Errorf("unread: invalidate: %w", err)
	}
	return nil
}

// Counts returns user's total unread over unmuted conversations and the
// counts of convs, from Redis, rebuilt from the store when missing.
func (r *Redis) Counts(ctx context.Context, user int64, convs []string) (int64, map[string]int64, error) {
	args := make([]any, len(convs))
	for i, c := range convs {
		args[i] = c
	}
	v, err := getScript.Run(ctx, r.c, r.keys(user)[:1], args...).Slice()
	if err == nil {
		if len(v) != len(convs)+1 {
			return 0, nil, errors.New("unread: bad counters answer")
		}
		total, err := toInt(v[0])
		if err != nil {
			return 0, nil, err
		}
		counts := make(map[string]int64, len(convs))
		for i, c := range convs {
			if counts[c], err = toInt(v[i+1]); err != nil {
				return 0, nil, err
			}
		}
		return total, counts, nil
	}
	if !errors.Is(err, redis.Nil) {
		return 0, nil, fmt.Errorf("unread: get: %w", err)
	}
	return r.rebuild(ctx, user, convs)
}

// rebuild reads user's counters from the store, stores them unless a
// write for the user intervened, and answers them.
func (r *Redis) rebuild(ctx context.Context, user int64, convs []string) (int64, map[string]int64, error) {
	keys := r.keys(user)
	var tok [12]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	if err := r.c.Set(ctx, keys[1], token, r.build).Err(); err != nil {
		return 0, nil, fmt.Errorf("unread: rebuild: %w", err)
	}
	var total int64
	all := make(map[string]int64)
	fields := []any{"t", int64(0)}
	var after store.ConversationCursor
	for {
		page, err := r.src.ConversationsAfter(ctx, user, after, store.MaxPageLimit)
		if err != nil {
			return 0, nil, fmt.Errorf("unread: rebuild: %w", err)
		}
		for i := range page {
			c := &page[i]
			all[c.ConversationID] = c.Unread
			fields = append(fields, "c:"+c.ConversationID, c.Unread, "s:"+c.ConversationID, c.MaxSeq)
			if c.Muted {
				fields = append(fields, "m:"+c.ConversationID, 1)
			} else {
				total += c.Unread
			}
		}
		if len(page) < store.MaxPageLimit {
			break
		}
		last := &page[len(page)-1]
		after = store.ConversationCursor{UpdatedAt: last.UpdatedAt, ConversationID: last.ConversationID}
	}
	fields[1] = total
	args := append([]any{token, r.ttl.Milliseconds()}, fields...)
	if err := finishScript.Run(ctx, r.c, keys, args...).Err(); err != nil {
		r.log.Warn("unread counters not stored after a rebuild", "user", user, "err", err)
	}
	counts := make(map[string]int64, len(convs))
	for _, c := range convs {
		counts[c] = all[c]
	}
	return total, counts, nil
}

// pipelined runs fill's script calls in one pipeline, loading the script
// once when Redis does not know it.
func (r *Redis) pipelined(ctx context.Context, s *redis.Script, fill func(p redis.Pipeliner)) error {
	run := func() error {
		cmds, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error { fill(p); return nil })
		if err != nil {
			return err
		}
		for _, c := range cmds {
			if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
		}
		return nil
	}
	err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = s.Load(ctx, r.c).Err(); err == nil {
			err = run()
		}
	}
	if err != nil {
		return fmt.Errorf("unread: %w", err)
	}
	return nil
}

// dropAfterError drops the counters a failed write may have left wrong.
func (r *Redis) dropAfterError(ctx context.Context, op string, err error, users []int64) {
	r.log.Warn("unread counters not updated: dropping them", "op", op, "users", len(users), "err", err)
	_ = r.Invalidate(context.WithoutCancel(ctx), users...)
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case string:
		return strconv.ParseInt(x, 10, 64)
	case int64:
		return x, nil
	}
	return 0, fmt.Errorf("unread: bad counter %v", v)
}

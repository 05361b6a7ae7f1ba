package msgcache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/store"
)

// RedisConfig configures the Redis backend. Zero values take the default
// documented on each field.
type RedisConfig struct {
	// Prefix starts every key; no '{' or '}' (the conversation id is the
	// Redis Cluster hash tag). Default "goim:msgcache:".
	Prefix string `yaml:"prefix"`
	// WindowSize is K, the most recent messages kept per conversation.
	// Default 200.
	WindowSize int `yaml:"window_size"`
	// TTL is how long a window lives after its last append: idle
	// conversations leave Redis by themselves. Default 30m.
	TTL time.Duration `yaml:"ttl"`
}

// DefaultRedisConfig returns the default configuration.
func DefaultRedisConfig() RedisConfig {
	return RedisConfig{Prefix: "goim:msgcache:", WindowSize: 200, TTL: 30 * time.Minute}
}

// Redis is the Backend shared by every logic process. Keys (P: the prefix):
//
//	P w:{<conv>}   the window: a sorted set of encoded messages scored by seq
//	P f:{<conv>}   the recall fence (appends are ignored while it lives)
//
// Append, Window and Drop are each one round trip (Lua scripts, pipelined
// over the conversations of a call).
type Redis struct {
	c      redis.UniversalClient
	prefix string
	k      int
	ttl    time.Duration
}

var _ Backend = (*Redis)(nil)

// NewRedis returns a backend on c, which the caller owns (and closes).
// Configure c with short timeouts and few retries: a read waits for them
// before falling back to the store.
func NewRedis(c redis.UniversalClient, cfg RedisConfig) (*Redis, error) {
	d := DefaultRedisConfig()
	if cfg.Prefix == "" {
		cfg.Prefix = d.Prefix
	}
	if cfg.WindowSize <= 0 {
		cfg.WindowSize = d.WindowSize
	}
	if cfg.TTL <= 0 {
		cfg.TTL = d.TTL
	}
	if c == nil {
		return nil, errors.New("msgcache: nil redis client")
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("msgcache: redis prefix %q contains a brace", cfg.Prefix)
	}
	if cfg.TTL < time.Millisecond {
		return nil, fmt.Errorf("msgcache: redis TTL %v under 1ms", cfg.TTL)
	}
	return &Redis{c: c, prefix: cfg.Prefix, k: cfg.WindowSize, ttl: cfg.TTL}, nil
}

// Name returns "redis".
func (r *Redis) Name() string { return "redis" }

func (r *Redis) key(kind, conv string) string {
	return r.prefix + kind + ":{" + conv + "}"
}

// appendScript: KEYS window, fence; ARGV k, ttl ms, then seq/member pairs.
// Returns -1 when fenced, 1 when the window was replaced (a gap), else 0.
var appendScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local first = tonumber(ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local gap = 0
if top[2] ~= nil and tonumber(top[2]) + 1 ~= first then
  redis.call('DEL', KEYS[1])
  gap = 1
end
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return gap
`)

// windowScript: KEYS window; ARGV from, to. Returns {lo, hi, members}.
var windowScript = redis.NewScript(`
local lo = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if lo[2] == nil then return {'0', '0', {}} end
local hi = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
return {lo[2], hi[2], redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])}
`)

// Append appends runs, one script call each, pipelined.
func (r *Redis) Append(ctx context.Context, runs ...Run) (int, error) {
	var cmds []*redis.Cmd
	run := func() error {
		cmds = cmds[:0]
		_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			var buf []byte
			for _, run := range runs {
				msgs := run.Msgs
				if len(msgs) == 0 {
					continue
				}
				if len(msgs) > r.k {
					msgs = msgs[len(msgs)-r.k:]
				}
				args := make([]any, 0, 2+2*len(msgs))
				args = append(args, r.k, r.ttl.Milliseconds())
				for i := range msgs {
					buf = appendMessage(buf[:0], &msgs[i])
					args = append(args, msgs[i].Seq, string(buf))
				}
				cmds = append(cmds, appendScript.EvalSha(ctx, p, []string{r.key("w", run.ConvID), r.key("f", run.ConvID)}, args...))
			}
			return nil
		})
		return err
	}
	err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = appendScript.Load(ctx, r.c).Err(); err == nil {
			err = run()
		}
	}
	if err != nil {
		return 0, fmt.Errorf("msgcache: redis append: %w", err)
	}
	gaps := 0
	for _, c := range cmds {
		if n, _ := c.Int(); n == 1 {
			gaps++
		}
	}
	return gaps, nil
}

// Window returns convID's bounds and its messages in [from, to].
func (r *Redis) Window(ctx context.Context, convID string, from, to int64) (Window, error) {
	v, err := windowScript.Run(ctx, r.c, []string{r.key("w", convID)}, from, to).Slice()
	if err != nil {
		return Window{}, fmt.Errorf("msgcache: redis window: %w", err)
	}
	if len(v) != 3 {
		return Window{}, fmt.Errorf("msgcache: redis window: %w", errBadMessage)
	}
	lo, err1 := scoreOf(v[0])
	hi, err2 := scoreOf(v[1])
	members, ok := v[2].([]any)
	if err1 != nil || err2 != nil || !ok || lo < 0 || hi < lo {
		return Window{}, fmt.Errorf("msgcache: redis window: %w", errBadMessage)
	}
	w := Window{Lo: lo, Hi: hi}
	if len(members) > 0 {
		w.Msgs = make([]store.Message, len(members))
		for i, mv := range members {
			s, ok := mv.(string)
			if !ok {
				return Window{}, fmt.Errorf("msgcache: redis window: %w", errBadMessage)
			}
			if err := decodeMessage(s, &w.Msgs[i]); err != nil {
				return Window{}, fmt.Errorf("msgcache: redis window: %w", err)
			}
		}
	}
	return w, nil
}

func scoreOf(v any) (int64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, errBadMessage
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != float64(int64(f)) {
		return 0, errBadMessage
	}
	return int64(f), nil
}

// Drop deletes windows, fencing them for fence when positive: one
// pipeline.
func (r *Redis) Drop(ctx context.Context, fence time.Duration, convIDs ...string) error {
	if len(convIDs) == 0 {
		return nil
	}
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range convIDs {
			if fence > 0 {
				p.Set(ctx, r.key("f", id), "1", fence)
			}
			p.Del(ctx, r.key("w", id))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("msgcache: redis drop: %w", err)
	}
	return nil
}

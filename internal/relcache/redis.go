package relcache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/store"
)

// RedisConfig configures the Redis backend. Zero values take the default
// documented on each field.
type RedisConfig struct {
	// Prefix starts every key. It must not contain '{' or '}': member keys
	// use the group id as their Redis Cluster hash tag. Default
	// "goim:relcache:".
	Prefix string `yaml:"prefix"`
	// LeaseTTL is how long a miss keeps the right to fill its key; a fill
	// that takes longer is dropped. Default 2s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// Logger says when the backend falls back to Lua lookups. Default
	// slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// DefaultRedisConfig returns the default configuration.
func DefaultRedisConfig() RedisConfig {
	return RedisConfig{Prefix: "goim:relcache:", LeaseTTL: 2 * time.Second, Logger: slog.Default()}
}

// Redis is the Backend shared by every logic process of the distributed
// mode. A lookup is one round trip: SET key lease NX GET returns the value
// on a hit and installs the lease on a miss (a membership sends two in one
// pipeline); a miss adds one compare-and-set script call for the fill.
// Redis 7.0+ is expected; on older servers (SET NX GET is a syntax error)
// the backend switches to a Lua script doing the same. Redis Cluster works:
// a group and its members share a hash slot.
//
// Keys (P: the prefix):
//
//	P f:<user>:<friend>      friendship
//	P b:<user>:<blocked>     block
//	P g:{<group>}            group flags and generation
//	P m:{<group>}:<user>     membership
//
// Values are 19 bytes: 'V', flags, role, muted-until (Unix ms), generation;
// a lease is 'L' and its 8-byte token. Entries expire by PX.
type Redis struct {
	c        redis.UniversalClient
	prefix   string
	leaseTTL time.Duration
	log      *slog.Logger
	scripted atomic.Bool // the server has no SET NX GET: use getScript
}

var _ Backend = (*Redis)(nil)

// NewRedis returns a backend on c, which the caller owns (and closes).
// Configure c with short timeouts and few retries: a lookup waits for them
// before falling back to the store.
func NewRedis(c redis.UniversalClient, cfg RedisConfig) (*Redis, error) {
	d := DefaultRedisConfig()
	if cfg.Prefix == "" {
		cfg.Prefix = d.Prefix
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = d.LeaseTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = d.Logger
	}
	if c == nil {
		return nil, errors.New("relcache: nil redis client")
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("relcache: redis prefix %q contains a brace", cfg.Prefix)
	}
	if cfg.LeaseTTL < time.Millisecond {
		return nil, fmt.Errorf("relcache: redis lease TTL %v under 1ms", cfg.LeaseTTL)
	}
	return &Redis{c: c, prefix: cfg.Prefix, leaseTTL: cfg.LeaseTTL, log: cfg.Logger}, nil
}

// Name returns "redis".
func (r *Redis) Name() string { return "redis" }

// Key returns the Redis key of k (tests, debugging).
func (r *Redis) Key(k Key) string {
	b := make([]byte, 0, len(r.prefix)+48)
	b = append(b, r.prefix...)
	switch k.Kind {
	case KindFriend:
		b = append(b, "f:"...)
	case KindBlock:
		b = append(b, "b:"...)
	case KindGroup:
		b = append(b, "g:{"...)
		b = strconv.AppendInt(b, k.A, 10)
		return string(append(b, '}'))
	case KindMember:
		b = append(b, "m:{"...)
		b = strconv.AppendInt(b, k.A, 10)
		b = append(b, "}:"...)
		return string(strconv.AppendInt(b, k.B, 10))
	default:
		b = append(b, 'x')
		b = strconv.AppendUint(b, uint64(k.Kind), 10)
		b = append(b, ':')
	}
	b = strconv.AppendInt(b, k.A, 10)
	b = append(b, ':')
	return string(strconv.AppendInt(b, k.B, 10))
}

const (
	valueLen = 19
	leaseLen = 9

	flagFound     = 1 << 0
	flagMuteAll   = 1 << 1
	flagDismissed = 1 << 2
	flagsKnown    = flagFound | flagMuteAll | flagDismissed
)

var errBadValue = errors.New("relcache: malformed cached value")

func encodeValue(v Value) string {
	var b [valueLen]byte
	b[0] = 'V'
	if v.Found {
		b[1] |= flagFound
	}
	if v.MuteAll {
		b[1] |= flagMuteAll
	}
	if v.Dismissed {
		b[1] |= flagDismissed
	}
	b[2] = byte(int8(v.Role))
	binary.BigEndian.PutUint64(b[3:], uint64(v.MutedUntil))
	binary.BigEndian.PutUint64(b[11:], v.Gen)
	return string(b[:])
}

// decodeValue decodes a value read from Redis: network input.
func decodeValue(s string) (Value, error) {
	if len(s) != valueLen || s[0] != 'V' || s[1]&^flagsKnown != 0 {
		return Value{}, errBadValue
	}
	return Value{
		Found:      s[1]&flagFound != 0,
		MuteAll:    s[1]&flagMuteAll != 0,
		Dismissed:  s[1]&flagDismissed != 0,
		Role:       store.Role(int8(s[2])),
		MutedUntil: int64(binary.BigEndian.Uint64([]byte(s[3:11]))),
		Gen:        binary.BigEndian.Uint64([]byte(s[11:19])),
	}, nil
}

func isLease(s string) bool { return len(s) == leaseLen && s[0] == 'L' }

func encodeLease(tok uint64) string {
	var b [leaseLen]byte
	b[0] = 'L'
	binary.BigEndian.PutUint64(b[1:], tok)
	return string(b[:])
}

// newToken returns a lease token: 64 random bits, so that tokens of
// different processes do not collide and a key never sees one twice.
func newToken() uint64 {
	for {
		if t := rand.Uint64(); t != 0 {
			return t
		}
	}
}

// Get looks k up, leasing it when it is empty: one SET NX GET.
func (r *Redis) Get(ctx context.Context, k Key) (Result, error) {
	if r.scripted.Load() {
		res, err := r.getScripted(ctx, k)
		return res[0], err
	}
	key, tok := r.Key(k), newToken()
	s, err := r.c.SetArgs(ctx, key, encodeLease(tok), redis.SetArgs{Mode: "NX", Get: true, TTL: r.leaseTTL}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		if r.fallBack(err) {
			return r.Get(ctx, k)
		}
		return Result{}, fmt.Errorf("relcache: redis get: %w", err)
	}
	return r.result(ctx, k, s, err, tok)
}

// Get2 looks a group key and a member key up: two SET NX GET in one
// pipeline (the keys share a hash slot).
func (r *Redis) Get2(ctx context.Context, k1, k2 Key) (r1, r2 Result, err error) {
	if r.scripted.Load() {
		res, err := r.getScripted(ctx, k1, k2)
		return res[0], res[1], err
	}
	key1, key2, tok1, tok2 := r.Key(k1), r.Key(k2), newToken(), newToken()
	var c1, c2 *redis.StatusCmd
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		c1 = p.SetArgs(ctx, key1, encodeLease(tok1), redis.SetArgs{Mode: "NX", Get: true, TTL: r.leaseTTL})
		c2 = p.SetArgs(ctx, key2, encodeLease(tok2), redis.SetArgs{Mode: "NX", Get: true, TTL: r.leaseTTL})
		return nil
	})
	for _, c := range []*redis.StatusCmd{c1, c2} {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			if r.fallBack(err) {
				return r.Get2(ctx, k1, k2)
			}
			return Result{}, Result{}, fmt.Errorf("relcache: redis get: %w", err)
		}
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return Result{}, Result{}, fmt.Errorf("relcache: redis get: %w", err)
	}
	if r1, err = r.result(ctx, k1, c1.Val(), c1.Err(), tok1); err != nil {
		return Result{}, Result{}, err
	}
	if r2, err = r.result(ctx, k2, c2.Val(), c2.Err(), tok2); err != nil {
		return Result{}, Result{}, err
	}
	return r1, r2, nil
}

// result interprets the answer of SET NX GET: redis.Nil means the key was
// empty and now holds our lease; otherwise s is what the key held.
func (r *Redis) result(ctx context.Context, k Key, s string, err error, tok uint64) (Result, error) {
	switch {
	case errors.Is(err, redis.Nil):
		return Result{Lease: tok}, nil
	case isLease(s):
		return Result{}, nil
	}
	if v, err := decodeValue(s); err == nil {
		return Result{Value: v, Hit: true}, nil
	}
	l, err := r.Lease(ctx, k) // malformed: replace it with a lease
	return Result{Lease: l}, err
}

// fallBack switches to the scripted lookups when the server rejects SET
// with both NX and GET (Redis before 7.0) and reports whether it did.
func (r *Redis) fallBack(err error) bool {
	if !strings.Contains(err.Error(), "syntax error") {
		return false
	}
	if !r.scripted.Swap(true) {
		r.log.Warn("relcache: redis rejects SET NX GET (Redis < 7.0): using Lua lookups", "err", err)
	}
	return true
}

// getScript is the lookup of servers without SET NX GET: for each key
// KEYS[i], its value, or 0 if it holds a lease, or else (empty or
// malformed) 1 after setting the lease ARGV[i] with a TTL of ARGV[#KEYS+1]
// ms.
var getScript = redis.NewScript(`
local res = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  local n, t = 0, 0
  if v then n, t = string.len(v), string.byte(v, 1) end
  if n == 9 and t == 76 then
    res[i] = 0
  elseif n == 19 and t == 86 then
    res[i] = v
  else
    redis.call('SET', key, ARGV[i], 'PX', ARGV[#KEYS + 1])
    res[i] = 1
  end
end
return res
`)

func (r *Redis) getScripted(ctx context.Context, keys ...Key) ([2]Result, error) {
	var res [2]Result
	names := make([]string, len(keys))
	toks := make([]uint64, len(keys))
	args := make([]any, 0, len(keys)+1)
	for i, k := range keys {
		names[i], toks[i] = r.Key(k), newToken()
		args = append(args, encodeLease(toks[i]))
	}
	args = append(args, r.leaseTTL.Milliseconds())
	out, err := getScript.Run(ctx, r.c, names, args...).Slice()
	if err != nil {
		return res, fmt.Errorf("relcache: redis get: %w", err)
	}
	if len(out) != len(keys) {
		return res, fmt.Errorf("relcache: redis get: %d results for %d keys", len(out), len(keys))
	}
	for i, x := range out {
		switch x := x.(type) {
		case string:
			if v, err := decodeValue(x); err == nil {
				res[i] = Result{Value: v, Hit: true}
			}
		case int64:
			if x == 1 {
				res[i] = Result{Lease: toks[i]}
			}
		}
	}
	return res, nil
}

// leaseScript leases KEYS[1] (ARGV[1]: the lease, ARGV[2]: its TTL in ms)
// unless it holds a lease.
var leaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.len(v) == 9 and string.byte(v, 1) == 76 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// setScript stores, for each key i, the value ARGV[3i-1] with the TTL
// ARGV[3i] (ms; 0: delete the key instead) if the key holds the lease
// ARGV[3i-2].
var setScript = redis.NewScript(`
local n = 0
for i, key in ipairs(KEYS) do
  local j = (i - 1) * 3
  if redis.call('GET', key) == ARGV[j + 1] then
    if tonumber(ARGV[j + 3]) > 0 then
      redis.call('SET', key, ARGV[j + 2], 'PX', ARGV[j + 3])
    else
      redis.call('DEL', key)
    end
    n = n + 1
  end
end
return n
`)

// Lease leases k, replacing its value, unless another lease is live.
func (r *Redis) Lease(ctx context.Context, k Key) (uint64, error) {
	tok := newToken()
	n, err := leaseScript.Run(ctx, r.c, []string{r.Key(k)}, encodeLease(tok), r.leaseTTL.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("relcache: redis lease: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	return tok, nil
}

// Set stores (or releases) the items whose keys still hold their leases,
// in one script.
func (r *Redis) Set(ctx context.Context, items ...Item) error {
	keys := make([]string, 0, len(items))
	args := make([]any, 0, 3*len(items))
	for _, it := range items {
		if it.Lease == 0 {
			continue
		}
		ttl := int64(0) // release
		if it.TTL > 0 {
			ttl = max(1, it.TTL.Milliseconds())
		}
		keys = append(keys, r.Key(it.Key))
		args = append(args, encodeLease(it.Lease), encodeValue(it.Value), ttl)
	}
	if len(keys) == 0 {
		return nil
	}
	if err := setScript.Run(ctx, r.c, keys, args...).Err(); err != nil {
		return fmt.Errorf("relcache: redis set: %w", err)
	}
	return nil
}

// Delete removes keys: one DEL per key in one pipeline, so that keys of
// different Redis Cluster slots may be mixed.
func (r *Redis) Delete(ctx context.Context, keys ...Key) error {
	var err error
	switch len(keys) {
	case 0:
		return nil
	case 1:
		err = r.c.Del(ctx, r.Key(keys[0])).Err()
	default:
		_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Del(ctx, r.Key(k))
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("relcache: redis delete: %w", err)
	}
	return nil
}

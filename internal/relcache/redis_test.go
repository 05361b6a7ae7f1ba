package relcache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/relcache/cachetest"
	"github.com/goimdev/goim/internal/store"
)

// quietRedis drops go-redis's own log lines (the outage tests make it log
// every failed dial).
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedis{}) }

// redisClient connects to the server of GOIM_TEST_REDIS_ADDR, skipping the
// test when it is unset, and returns a key prefix unique to this test whose
// keys are deleted when it ends.
func redisClient(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	addr := os.Getenv("GOIM_TEST_REDIS_ADDR")
	if addr == "" {
		tb.Skip("GOIM_TEST_REDIS_ADDR not set: Redis suite skipped (apt-get install -y redis-server, then GOIM_TEST_REDIS_ADDR=127.0.0.1:6379)")
	}
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 32})
	if err := c.Ping(tb.Context()).Err(); err != nil {
		c.Close()
		tb.Fatalf("GOIM_TEST_REDIS_ADDR=%s: %v", addr, err)
	}
	prefix := fmt.Sprintf("goimtest:relcache:%016x:", rand.Uint64())
	tb.Cleanup(func() {
		defer c.Close()
		if n := deletePrefix(tb, c, prefix); n < 0 {
			tb.Errorf("cleanup of %s* failed", prefix)
		}
	})
	return c, prefix
}

// deletePrefix deletes every key under prefix (SCAN: tests only) and
// returns how many it deleted, -1 on error.
func deletePrefix(tb testing.TB, c *redis.Client, prefix string) int {
	ctx := context.Background()
	n := 0
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		if err := c.Del(ctx, batch...).Err(); err != nil {
			tb.Log(err)
			return false
		}
		n += len(batch)
		batch = batch[:0]
		return true
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 && !flush() {
			return -1
		}
	}
	if iter.Err() != nil || !flush() {
		return -1
	}
	return n
}

func newRedis(tb testing.TB, c redis.UniversalClient, cfg relcache.RedisConfig) *relcache.Redis {
	tb.Helper()
	b, err := relcache.NewRedis(c, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestRedisConformance(t *testing.T) {
	c, prefix := redisClient(t)
	var mu sync.Mutex
	n := 0
	newPrefix := func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return prefix + strconv.Itoa(n) + ":"
	}
	t.Run("native", func(t *testing.T) {
		cachetest.Run(t, func(t *testing.T) relcache.Backend {
			return newRedis(t, c, relcache.RedisConfig{Prefix: newPrefix()})
		})
	})
	t.Run("scripted", func(t *testing.T) { // the lookups of Redis < 7.0
		cachetest.Run(t, func(t *testing.T) relcache.Backend {
			b, err := relcache.NewRedisScripted(c, relcache.RedisConfig{Prefix: newPrefix()})
			if err != nil {
				t.Fatal(err)
			}
			return b
		})
	})
	if deleted := deletePrefix(t, c, prefix); deleted <= 0 {
		t.Fatalf("the suite left %d keys under %s*, want some (it wrote there)", deleted, prefix)
	}
	if keys, err := c.Keys(t.Context(), prefix+"*").Result(); err != nil || len(keys) != 0 {
		t.Fatalf("keys left after cleanup: %v %v", keys, err)
	}
}

func TestNewRedisValidation(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	tests := []struct {
		name   string
		client redis.UniversalClient
		cfg    relcache.RedisConfig
		ok     bool
	}{
		{"defaults", c, relcache.RedisConfig{}, true},
		{"nil client", nil, relcache.RedisConfig{}, false},
		{"brace in prefix", c, relcache.RedisConfig{Prefix: "a{b"}, false},
		{"closing brace", c, relcache.RedisConfig{Prefix: "a}"}, false},
		{"sub-millisecond lease", c, relcache.RedisConfig{LeaseTTL: time.Microsecond}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := relcache.NewRedis(tc.client, tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("NewRedis error = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestRedisKeys(t *testing.T) {
	b := newRedis(t, redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), relcache.RedisConfig{Prefix: "p:"})
	tests := []struct {
		k    relcache.Key
		want string
	}{
		{relcache.FriendKey(1, 2), "p:f:1:2"},
		{relcache.BlockKey(3, -4), "p:b:3:-4"},
		{relcache.GroupKey(5), "p:g:{5}"},
		{relcache.MemberKey(5, 6), "p:m:{5}:6"}, // same hash tag as its group
		{relcache.Key{Kind: 99, A: 7, B: 8}, "p:x99:7:8"},
	}
	for _, tc := range tests {
		if got := b.Key(tc.k); got != tc.want {
			t.Errorf("Key(%v) = %q, want %q", tc.k, got, tc.want)
		}
	}
}

// TestRedisTTL checks the TTLs the Cache gives entries and leases.
func TestRedisTTL(t *testing.T) {
	c, prefix := redisClient(t)
	b := newRedis(t, c, relcache.RedisConfig{Prefix: prefix, LeaseTTL: 3 * time.Second})
	src := cachetest.NewSource()
	cache := relcache.New(b, src, relcache.Config{TTL: 10 * time.Minute, NegativeTTL: time.Minute})
	ctx := t.Context()
	src.SetFriend(1, 2, true)
	for _, tc := range []struct {
		a, b     int64
		min, max time.Duration
	}{
		{1, 2, 9 * time.Minute, 10 * time.Minute}, // positive, up to 10% jitter
		{1, 3, 54 * time.Second, time.Minute},     // negative
	} {
		if _, err := cache.IsFriend(ctx, tc.a, tc.b); err != nil {
			t.Fatal(err)
		}
		ttl, err := c.PTTL(ctx, b.Key(relcache.FriendKey(tc.a, tc.b))).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl < tc.min-time.Second || ttl > tc.max {
			t.Errorf("TTL of %d/%d = %v, want in [%v, %v]", tc.a, tc.b, ttl, tc.min, tc.max)
		}
	}
	if _, err := b.Get(ctx, relcache.BlockKey(1, 2)); err != nil {
		t.Fatal(err)
	}
	ttl, err := c.PTTL(ctx, b.Key(relcache.BlockKey(1, 2))).Result()
	if err != nil || ttl <= 0 || ttl > 3*time.Second {
		t.Fatalf("lease TTL = %v, %v; want in (0, 3s]", ttl, err)
	}
}

// TestRedisMalformedValue: an unreadable value is a miss, and the lookup
// replaces it with its lease.
func TestRedisMalformedValue(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	b := newRedis(t, c, relcache.RedisConfig{})
	ctx := t.Context()
	garbage := map[relcache.Key]string{
		relcache.FriendKey(1, 2): "garbage",
		relcache.GroupKey(3):     "V",
		relcache.MemberKey(3, 4): "L1234",
		relcache.BlockKey(5, 6):  "V" + strings.Repeat("\xff", 18), // right shape, unknown flags
	}
	for k, v := range garbage {
		if err := m.Set(b.Key(k), v); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := b.Get(ctx, relcache.FriendKey(1, 2)); err != nil || r.Hit || r.Lease == 0 {
		t.Fatalf("Get of garbage = %+v, %v; want a miss with a lease", r, err)
	}
	r1, r2, err := b.Get2(ctx, relcache.GroupKey(3), relcache.MemberKey(3, 4))
	if err != nil || r1.Hit || r2.Hit || r1.Lease == 0 || r2.Lease == 0 {
		t.Fatalf("Get2 of garbage = %+v %+v %v; want misses with leases", r1, r2, err)
	}
	if r, err := b.Get(ctx, relcache.BlockKey(5, 6)); err != nil || r.Hit {
		t.Fatalf("Get of a value with unknown flags = %+v, %v; want a miss", r, err)
	}
	for k, v := range garbage {
		if got, _ := m.Get(b.Key(k)); got == v && k.Kind != relcache.KindBlock {
			t.Errorf("%v still holds %q", k, v)
		}
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestRedisOutage: with Redis down, lookups answer from the Source without
// error, errors are counted, the backend is bypassed, invalidations are
// queued and applied before the backend is used again.
func TestRedisOutage(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second})
	defer c.Close()
	b := newRedis(t, c, relcache.RedisConfig{})
	src := cachetest.NewSource()
	clock := newClock()
	cache := relcache.New(b, src, relcache.Config{Now: clock.Now, RetryAfter: time.Second, MaxPending: 3,
		Logger: slog.New(slog.DiscardHandler)})
	ctx := t.Context()
	a, u, g := int64(1), int64(2), int64(3)
	src.SetFriend(a, u, true)
	src.SetGroup(store.Group{ID: g})
	src.SetMember(store.Member{GroupID: g, UserID: a})
	check := func(wantFriend, wantMember bool) {
		t.Helper()
		f, err := cache.IsFriend(ctx, a, u)
		if err != nil || f != wantFriend {
			t.Fatalf("IsFriend = %v, %v; want %v", f, err, wantFriend)
		}
		ms, err := cache.Membership(ctx, g, a)
		if err != nil || ms.IsMember != wantMember {
			t.Fatalf("Membership = %+v, %v; want member %v", ms, err, wantMember)
		}
	}
	check(true, true)
	check(true, true)
	if s := cache.Stats(); s.Total() != (relcache.Counts{Hits: 2, Misses: 2}) {
		t.Fatalf("warm-up stats %+v", s)
	}
	friendKey, memberKey := b.Key(relcache.FriendKey(a, u)), b.Key(relcache.MemberKey(g, a))
	staleFriend, err1 := m.Get(friendKey)
	staleMember, err2 := m.Get(memberKey)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("warm-up left no entries: %v", err)
	}
	stale := func() bool { // an entry from before the outage is still there
		f, _ := m.Get(friendKey)
		mm, _ := m.Get(memberKey)
		return f == staleFriend || mm == staleMember
	}

	m.Close()
	src.SetFriend(a, u, false)
	src.RemoveMember(g, a)
	if err := cache.InvalidateFriend(ctx, a, u); err != nil {
		t.Fatalf("InvalidateFriend during the outage = %v, want nil (queued)", err)
	}
	if err := cache.InvalidateMember(ctx, g, a); err != nil {
		t.Fatalf("InvalidateMember = %v, want nil (queued)", err)
	}
	errs := cache.Stats().BackendErrors
	if errs == 0 {
		t.Fatal("the failed invalidation was not counted")
	}
	calls := src.TotalCalls()
	check(false, false) // from the Source, no error
	if n := src.TotalCalls() - calls; n != 3 {
		t.Fatalf("lookups during the outage made %d Source calls, want 3", n)
	}
	if got := cache.Stats().BackendErrors; got != errs {
		t.Fatalf("bypassed lookups still called the backend: errors %d -> %d", errs, got)
	}

	// The pending queue is full (3 keys: two friendship directions and the
	// member): one more key is lost.
	if err := cache.InvalidateBlock(ctx, 9, 9); !errors.Is(err, relcache.ErrInvalidationLost) {
		t.Fatalf("invalidation beyond MaxPending = %v, want ErrInvalidationLost", err)
	}
	if got := cache.Stats().LostInvalidations; got == 0 {
		t.Fatal("lost invalidation not counted")
	}

	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if !stale() {
		t.Fatal("setup: the stale entries are not in Redis after the restart")
	}
	check(false, false) // still bypassed: the retry interval has not passed
	if !stale() {
		t.Fatal("the backend was used before RetryAfter")
	}
	// After RetryAfter, the next lookup flushes the pending invalidations.
	// go-redis keeps failing fast after dial errors until its background
	// redial (about 1s of real time) succeeds: poll with a deadline.
	deadline := time.Now().Add(15 * time.Second)
	for stale() {
		if time.Now().After(deadline) {
			t.Fatal("the pending invalidations were never applied")
		}
		clock.Advance(2 * time.Second)
		check(false, false)
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	check(false, false)
	calls = src.TotalCalls()
	check(false, false)
	if n := src.TotalCalls() - calls; n != 0 {
		t.Fatalf("after recovery the lookups made %d Source calls, want 0 (cached again)", n)
	}
}

// TestRedisCallerCancelDoesNotTrip: a lookup whose context ends is not a
// backend failure.
func TestRedisCallerCancelDoesNotTrip(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	src := cachetest.NewSource()
	cache := relcache.New(newRedis(t, c, relcache.RedisConfig{}), src, relcache.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := cache.IsFriend(ctx, 1, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("IsFriend with a canceled context = %v", err)
	}
	if _, err := cache.Membership(ctx, 1, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("Membership with a canceled context = %v", err)
	}
	if s := cache.Stats(); s.BackendErrors != 0 {
		t.Fatalf("caller cancellation counted as %d backend errors", s.BackendErrors)
	}
	src.SetFriend(1, 2, true)
	if ok, err := cache.IsFriend(t.Context(), 1, 2); err != nil || !ok {
		t.Fatalf("IsFriend = %v, %v", ok, err)
	}
}

// TestRedisInvalidateSurvivesCancel: an invalidation is applied even if the
// caller's context is already canceled (the change is committed).
func TestRedisInvalidateSurvivesCancel(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	b := newRedis(t, c, relcache.RedisConfig{})
	src := cachetest.NewSource()
	cache := relcache.New(b, src, relcache.Config{})
	src.SetFriend(1, 2, true)
	if ok, err := cache.IsFriend(t.Context(), 1, 2); err != nil || !ok {
		t.Fatalf("IsFriend = %v, %v", ok, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := cache.InvalidateFriend(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	if m.Exists(b.Key(relcache.FriendKey(1, 2))) {
		t.Fatal("the invalidation was aborted by the caller's cancellation")
	}
}

// oldRedis makes the server look like Redis < 7.0: SET with NX and GET is
// a syntax error.
type oldRedis struct{ rejected atomic.Int64 }

func (h *oldRedis) reject(cmd redis.Cmder) bool {
	if cmd.Name() != "set" {
		return false
	}
	nx, get := false, false
	for _, a := range cmd.Args() {
		switch a {
		case "NX", "nx":
			nx = true
		case "get", "GET":
			get = true
		}
	}
	if nx && get {
		h.rejected.Add(1)
		cmd.SetErr(errors.New("ERR syntax error"))
		return true
	}
	return false
}

func (h *oldRedis) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *oldRedis) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.reject(cmd) {
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

func (h *oldRedis) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if h.reject(cmd) {
				return cmd.Err()
			}
		}
		return next(ctx, cmds)
	}
}

// TestRedisFallback: on a server without SET NX GET the backend switches
// to the Lua lookups once and keeps working.
func TestRedisFallback(t *testing.T) {
	for _, first := range []string{"Get", "Get2"} {
		t.Run(first, func(t *testing.T) {
			m := miniredis.RunT(t)
			c := redis.NewClient(&redis.Options{Addr: m.Addr()})
			defer c.Close()
			hook := &oldRedis{}
			c.AddHook(hook)
			b := newRedis(t, c, relcache.RedisConfig{Logger: slog.New(slog.DiscardHandler)})
			src := cachetest.NewSource()
			src.SetFriend(1, 2, true)
			src.SetGroup(store.Group{ID: 3})
			src.SetMember(store.Member{GroupID: 3, UserID: 1, Role: store.RoleAdmin})
			cache := relcache.New(b, src, quietConfig())
			lookups := []func() error{
				func() error { _, err := cache.IsFriend(t.Context(), 1, 2); return err },
				func() error { _, err := cache.Membership(t.Context(), 3, 1); return err },
			}
			if first == "Get2" {
				lookups[0], lookups[1] = lookups[1], lookups[0]
			}
			for range 3 {
				for _, l := range lookups {
					if err := l(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := hook.rejected.Load(); n != 1 {
				t.Fatalf("SET NX GET sent %d times, want 1 (then the fallback)", n)
			}
			if s := cache.Stats(); s.BackendErrors != 0 || s.Total() != (relcache.Counts{Hits: 4, Misses: 2}) {
				t.Fatalf("stats %+v, want 4 hits, 2 misses, no backend error", s)
			}
		})
	}
}

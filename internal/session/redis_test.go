package session_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/internal/session/sessiontest"
	"github.com/goimdev/goim/internal/testenv"
)

// newRedis returns a registry on the Redis of GOIM_TEST_REDIS_ADDR under a
// prefix of the test's own (skipping the test when the variable is unset).
func newRedis(t testing.TB, cfg session.RedisConfig) (*session.Redis, *redis.Client, string) {
	t.Helper()
	addr := testenv.RedisAddr(t)
	cfg.Prefix = testenv.RedisPrefix(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	r, err := session.NewRedis(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, c, cfg.Prefix
}

func TestRedisConformance(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) session.Registry {
		r, _, _ := newRedis(t, session.RedisConfig{})
		return r
	})
}

// TestMiniredisConformance runs the suite without a Redis server, on the
// in-process miniredis (its Lua and TIME), so that the scripts are covered
// everywhere. It is skipped when a real Redis is configured (slow under
// -race, and TestRedisConformance covers more).
func TestMiniredisConformance(t *testing.T) {
	if os.Getenv(testenv.RedisEnv) != "" {
		t.Skip(testenv.RedisEnv + " set: TestRedisConformance runs the suite on the real Redis")
	}
	sessiontest.Run(t, func(t *testing.T) session.Registry {
		mr := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { c.Close() })
		r, err := session.NewRedis(c, session.RedisConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	})
}

func TestRedisRejectsCluster(t *testing.T) {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer c.Close()
	if _, err := session.NewRedis(c, session.RedisConfig{}); err == nil {
		t.Fatal("NewRedis accepted a cluster client")
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRedisExpiryAndRepair: a comet that stops touching and reporting (it
// died) vanishes from every lookup after the TTLs; when it comes back its
// heartbeats and report rebuild everything. Flushing the registry's keys
// (a Redis restart) is repaired the same way.
func TestRedisExpiryAndRepair(t *testing.T) {
	ctx := t.Context()
	r, c, prefix := newRedis(t, session.RedisConfig{SessionTTL: 300 * time.Millisecond, ServerTTL: 300 * time.Millisecond})
	s := session.Session{UserID: 7, Key: "dev", Server: "c1", ConnID: "1", Platform: "ios"}
	if err := r.Add(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := r.SetServer(ctx, session.ServerInfo{Name: "c1"}, map[string]int32{"room": 2}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRoom(ctx, "c2", "room"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.RoomServers(ctx, "room"); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("RoomServers = %v", got)
	}

	gone := func() bool {
		us, err1 := r.UserSessions(ctx, []int64{7})
		_, _, owned, err2 := r.KeyOwner(ctx, "dev")
		ks, err3 := r.KeyServers(ctx, []string{"dev"})
		rs, err4 := r.RoomServers(ctx, "room")
		rc, err5 := r.RoomCounts(ctx)
		ss, err6 := r.Servers(ctx)
		for _, err := range []error{err1, err2, err3, err4, err5, err6} {
			if err != nil {
				t.Fatal(err)
			}
		}
		return len(us) == 0 && !owned && len(ks) == 0 && len(rs) == 0 && rc["room"] == 0 && len(ss) == 0
	}
	waitFor(t, "the dead comet's entries to expire", gone)
	// The sessions' keys expire in Redis; the dead servers' keys are
	// deleted by the next report of any server.
	if err := r.SetServer(ctx, session.ServerInfo{Name: "c3"}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the keys to be reclaimed", func() bool {
		keys, err := c.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(keys)
		return slices.Equal(keys, []string{prefix + "live", prefix + "s:c3", prefix + "servers"})
	})

	repair := func() {
		t.Helper()
		if err := r.Touch(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := r.SetServer(ctx, session.ServerInfo{Name: "c1"}, map[string]int32{"room": 2}); err != nil {
			t.Fatal(err)
		}
		us, err := r.UserSessions(ctx, []int64{7})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(us[7], []session.Session{s}) {
			t.Fatalf("sessions after repair = %+v", us)
		}
		if _, srv, ok, _ := r.KeyOwner(ctx, "dev"); !ok || srv != "c1" {
			t.Fatalf("KeyOwner after repair = %q %v", srv, ok)
		}
		if got, _ := r.RoomServers(ctx, "room"); !slices.Equal(got, []string{"c1"}) {
			t.Fatalf("RoomServers after repair = %v", got)
		}
		if rc, _ := r.RoomCounts(ctx); rc["room"] != 2 {
			t.Fatalf("RoomCounts after repair = %v", rc)
		}
	}
	repair() // the comet came back

	// The registry is flushed (Redis restarted without persistence).
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys under the prefix")
	}
	if err := c.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	repair()
}

// TestRedisStaleFieldCleanup: a user's expired session is deleted from its
// hash by the user's next Add, and does not keep the key from another user.
func TestRedisStaleFieldCleanup(t *testing.T) {
	ctx := t.Context()
	r, c, prefix := newRedis(t, session.RedisConfig{SessionTTL: 200 * time.Millisecond})
	if err := r.Add(ctx, session.Session{UserID: 1, Key: "old", Server: "c"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session to expire", func() bool {
		us, err := r.UserSessions(ctx, []int64{1})
		if err != nil {
			t.Fatal(err)
		}
		return len(us) == 0
	})
	if err := r.Add(ctx, session.Session{UserID: 2, Key: "old", Server: "c"}); err != nil {
		t.Fatalf("Add of another user's expired key: %v", err)
	}
	if err := r.Add(ctx, session.Session{UserID: 1, Key: "new", Server: "c"}); err != nil {
		t.Fatal(err)
	}
	fields, err := c.HKeys(ctx, prefix+"u:1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fields, []string{"new"}) {
		t.Fatalf("user 1 hash fields = %v, want [new]", fields)
	}
	if uid, _, ok, _ := r.KeyOwner(ctx, "old"); !ok || uid != 2 {
		t.Fatalf("KeyOwner(old) = %d %v, want user 2", uid, ok)
	}
}

// BenchmarkRedisSessionOps measures one Add, one UserSessions (of that
// user) and one Touch per iteration, from parallel goroutines, against the
// Redis of GOIM_TEST_REDIS_ADDR: 8 goroutines per CPU keep requests in
// flight as the logic processes do. ops/s counts the three calls.
func BenchmarkRedisSessionOps(b *testing.B) {
	r, _, _ := newRedis(b, session.RedisConfig{})
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	var next int64
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	b.RunParallel(func(pb *testing.PB) {
		<-mu
		next++
		w := next
		mu <- struct{}{}
		i := 0
		for pb.Next() {
			i++
			uid := w*1_000_000 + int64(i%1000)
			s := session.Session{UserID: uid, Key: "k" + strconv.FormatInt(uid, 10), Server: "c1", ConnID: "1", Platform: "web"}
			if err := r.Add(ctx, s); err != nil {
				b.Fatal(err)
			}
			if us, err := r.UserSessions(ctx, []int64{uid}); err != nil || len(us[uid]) != 1 {
				b.Fatal(us, err)
			}
			if err := r.Touch(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(3*b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkRedisUserSessions100 measures UserSessions of 100 users (two
// devices each) in one call.
func BenchmarkRedisUserSessions100(b *testing.B) {
	r, _, _ := newRedis(b, session.RedisConfig{})
	ctx := context.Background()
	uids := make([]int64, 100)
	for i := range uids {
		uids[i] = int64(i + 1)
		for _, d := range []string{"a", "b"} {
			if err := r.Add(ctx, session.Session{UserID: uids[i], Key: d + strconv.Itoa(i), Server: "c1"}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if us, err := r.UserSessions(ctx, uids); err != nil || len(us) != 100 {
			b.Fatal(len(us), err)
		}
	}
}

// BenchmarkRedisRoomServers measures RoomServers of a room on 4 servers.
func BenchmarkRedisRoomServers(b *testing.B) {
	r, _, _ := newRedis(b, session.RedisConfig{})
	ctx := context.Background()
	rooms := map[string]int32{}
	for i := range 1000 {
		rooms["room"+strconv.Itoa(i)] = 10
	}
	for _, s := range []string{"c1", "c2", "c3", "c4"} {
		if err := r.SetServer(ctx, session.ServerInfo{Name: s}, rooms); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if rs, err := r.RoomServers(ctx, "room0"); err != nil || len(rs) != 4 {
			b.Fatal(rs, err)
		}
	}
}

// BenchmarkRedisSetServer1000 measures a comet's report of 1000 rooms.
func BenchmarkRedisSetServer1000(b *testing.B) {
	r, _, _ := newRedis(b, session.RedisConfig{})
	ctx := context.Background()
	rooms := map[string]int32{}
	for i := range 1000 {
		rooms["room"+strconv.Itoa(i)] = 10
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.SetServer(ctx, session.ServerInfo{Name: "c1", TakenAt: time.Now()}, rooms); err != nil {
			b.Fatal(err)
		}
	}
}

// TouchMany (the comets' batched heartbeats) follows Touch's rules for
// every session in one pipeline: sessions lost with Redis come back, a key
// held by another connection is left alone, an invalid session is reported
// without stopping the others.
func TestRedisTouchMany(t *testing.T) {
	ctx := t.Context()
	r, c, prefix := newRedis(t, session.RedisConfig{})
	a := session.Session{UserID: 1, Key: "a", Server: "c1", ConnID: "1"}
	b := session.Session{UserID: 2, Key: "b", Server: "c1", ConnID: "2"}
	newer := session.Session{UserID: 2, Key: "b", Server: "c2", ConnID: "9"}
	if err := r.Add(ctx, newer); err != nil {
		t.Fatal(err)
	}
	// a is unknown (as after a flush): TouchMany adds it; b's key belongs to
	// a newer connection on c2: its old connection's refresh is ignored.
	err := r.TouchMany(ctx, []session.Session{a, b, {UserID: 3, Key: "", Server: "c1"}})
	if err == nil {
		t.Fatal("TouchMany with an invalid session returned no error")
	}
	us, err := r.UserSessions(ctx, []int64{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(us[1]) != 1 || us[1][0].ConnID != "1" || len(us[2]) != 1 || us[2][0].ConnID != "9" {
		t.Fatalf("sessions after TouchMany: %+v", us)
	}
	// After the whole prefix is deleted, one TouchMany restores both.
	keys, _ := c.Keys(ctx, prefix+"*").Result()
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
	if err := r.TouchMany(ctx, []session.Session{a, newer}); err != nil {
		t.Fatal(err)
	}
	if us, _ := r.UserSessions(ctx, []int64{1, 2}); len(us[1]) != 1 || len(us[2]) != 1 {
		t.Fatalf("sessions after a flush and TouchMany: %+v", us)
	}
}

package msgcache_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/msgcache"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/sqlite"
	"github.com/goimdev/goim/internal/testenv"
)

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedis{}) }

// backendFactory makes a fresh backend for one test.
type backendFactory struct {
	name string
	new  func(t testing.TB) msgcache.Backend
}

const testK = 64

func factories() []backendFactory {
	return []backendFactory{
		{"memory", func(testing.TB) msgcache.Backend {
			return msgcache.NewMemory(msgcache.MemoryConfig{WindowSize: testK, MaxConversations: 64})
		}},
		{"miniredis", func(t testing.TB) msgcache.Backend {
			mr := miniredis.RunT(t)
			c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { c.Close() })
			return newRedisBackend(t, c, "goimtest:msgcache:")
		}},
		{"redis", func(t testing.TB) msgcache.Backend {
			addr := testenv.RedisAddr(t)
			c := redis.NewClient(&redis.Options{Addr: addr})
			t.Cleanup(func() { c.Close() })
			prefix := fmt.Sprintf("goimtest:msgcache:%016x:", rand.Uint64())
			t.Cleanup(func() {
				ctx := context.Background()
				keys, _ := c.Keys(ctx, prefix+"*").Result()
				if len(keys) > 0 {
					c.Del(ctx, keys...)
				}
			})
			return newRedisBackend(t, c, prefix)
		}},
	}
}

func newRedisBackend(t testing.TB, c redis.UniversalClient, prefix string) *msgcache.Redis {
	t.Helper()
	b, err := msgcache.NewRedis(c, msgcache.RedisConfig{Prefix: prefix, WindowSize: testK, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func forEachBackend(t *testing.T, fn func(t *testing.T, b msgcache.Backend)) {
	for _, f := range factories() {
		t.Run(f.name, func(t *testing.T) { fn(t, f.new(t)) })
	}
}

func openStore(t testing.TB) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "goim.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newCache(b msgcache.Backend, st store.Messages, mut ...func(*msgcache.Config)) *msgcache.Cache {
	cfg := msgcache.DefaultConfig()
	cfg.Logger = quiet
	for _, m := range mut {
		m(&cfg)
	}
	return msgcache.New(b, st, cfg)
}

var nextID atomic.Int64

// commit stores n messages from a to b (a < b) and, when notify, tells the
// cache like the committer does. It returns the stored messages.
func commit(t testing.TB, st store.Messages, c *msgcache.Cache, a, b int64, n int, notify bool) []*store.Message {
	t.Helper()
	conv := store.PairConversationID(a, b)
	msgs := make([]*store.Message, n)
	for i := range msgs {
		id := nextID.Add(1)
		msgs[i] = &store.Message{
			ID: id, ConversationID: conv, SenderID: a, ReceiverID: b, Type: 1,
			Content: fmt.Appendf(nil, `{"text":"m%d"}`, id), ClientMsgID: fmt.Sprint("c", id),
			IndexUsers: []int64{a, b},
		}
		if i%3 == 0 {
			msgs[i].Mentions = []int64{b}
		}
	}
	res, err := st.AppendMessages(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Duplicate {
			t.Fatalf("append: %+v", r)
		}
	}
	if notify {
		c.Committed(context.Background(), msgs)
	}
	return msgs
}

// samePage compares a page read through the cache with the store's.
func samePage(t testing.TB, c *msgcache.Cache, st store.Messages, conv string, after, before int64, limit int) {
	t.Helper()
	ctx := context.Background()
	got, gotMore, err := c.Messages(ctx, conv, after, before, limit)
	if err != nil {
		t.Fatalf("cache page (%d,%d,%d): %v", after, before, limit, err)
	}
	want, wantMore, err := st.Messages(ctx, conv, after, before, limit)
	if err != nil {
		t.Fatal(err)
	}
	if gotMore != wantMore || len(got) != len(want) {
		t.Fatalf("page (%d,%d,%d): %d messages more=%v, store %d more=%v", after, before, limit, len(got), gotMore, len(want), wantMore)
	}
	for i := range want {
		if d := diff(&got[i], &want[i]); d != "" {
			t.Fatalf("page (%d,%d,%d) message %d: %s", after, before, limit, i, d)
		}
	}
}

func diff(a, b *store.Message) string {
	switch {
	case a.ID != b.ID, a.Seq != b.Seq, a.ConversationID != b.ConversationID, a.SenderID != b.SenderID,
		a.ReceiverID != b.ReceiverID, a.GroupID != b.GroupID, a.Type != b.Type, a.Status != b.Status,
		a.ClientMsgID != b.ClientMsgID, !a.CreatedAt.Equal(b.CreatedAt), !bytes.Equal(a.Content, b.Content),
		fmt.Sprint(a.Mentions) != fmt.Sprint(b.Mentions):
		return fmt.Sprintf("cache %+v\nstore %+v", *a, *b)
	}
	return ""
}

// TestPagesEqualStore: every page shape read through the cache equals the
// store's; pages inside the window are hits, pages reaching below it miss.
func TestPagesEqualStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b msgcache.Backend) {
		st := openStore(t)
		c := newCache(b, st)
		const n = 150 // window keeps the last testK = 64: seqs 87..150
		for sent := 0; sent < n; {
			k := min(1+rand.IntN(20), n-sent)
			commit(t, st, c, 1, 2, k, true)
			sent += k
		}
		conv := store.PairConversationID(1, 2)
		type q struct {
			after, before int64
			limit         int
			hit           bool
		}
		for _, p := range []q{
			{after: 140, limit: 5, hit: true},    // inside, more after
			{after: 145, limit: 5, hit: true},    // up to the top exactly
			{after: 140, limit: 50, hit: true},   // beyond the top
			{after: 150, limit: 50, hit: true},   // up to date: empty
			{after: 86, limit: 64, hit: true},    // the whole window
			{after: 85, limit: 10, hit: false},   // starts below the window
			{after: 0, limit: 50, hit: false},    // old history
			{before: 151, limit: 20, hit: true},  // the last page
			{before: 120, limit: 33, hit: true},  // lowest page inside
			{before: 120, limit: 34, hit: false}, // reaches below
			{after: 100, before: 120, limit: 50, hit: true},
			{after: 118, before: 120, limit: 5, hit: true},
			{before: 200, limit: 10, hit: false}, // before beyond max_seq
			{after: 160, limit: 10, hit: false},  // after beyond the window
			{after: 10, before: 11, limit: 10, hit: false},
		} {
			before := c.Stats()
			samePage(t, c, st, conv, p.after, p.before, p.limit)
			hit := c.Stats().Hits > before.Hits
			if hit != p.hit {
				t.Errorf("page %+v: hit %v", p, hit)
			}
		}
		// Random pages, all equal to the store's.
		for range 100 {
			after := rand.Int64N(n + 5)
			var before int64
			if rand.IntN(2) == 0 {
				before = after + 1 + rand.Int64N(n)
			}
			samePage(t, c, st, conv, after, before, 1+rand.IntN(80))
		}
		// An unknown conversation, bad input: the store's answer.
		samePage(t, c, st, store.PairConversationID(7, 8), 0, 0, 10)
		if _, _, err := c.Messages(context.Background(), conv, 0, 0, 0); err == nil {
			t.Error("limit 0: no error")
		}
	})
}

// TestGapFallsThrough: a commit the cache did not see drops the window;
// the next commit starts a new one; no page is served with a hole.
func TestGapFallsThrough(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b msgcache.Backend) {
		st := openStore(t)
		c := newCache(b, st, func(cfg *msgcache.Config) { cfg.VerifyTail = true })
		conv := store.PairConversationID(3, 4)
		commit(t, st, c, 3, 4, 10, true)   // 1..10 cached
		commit(t, st, c, 3, 4, 5, false)   // 11..15: missed
		samePage(t, c, st, conv, 5, 0, 50) // VerifyTail: hi 10 < max 15, a miss
		if s := c.Stats(); s.Hits != 0 {
			t.Fatalf("stale tail served: %+v", s)
		}
		commit(t, st, c, 3, 4, 5, true) // 16..20: a gap, window restarts at 16
		if s := c.Stats(); s.Drops != 1 {
			t.Fatalf("drops %d, want 1", s.Drops)
		}
		h := c.Stats().Hits
		samePage(t, c, st, conv, 5, 0, 50)  // below the new window: miss
		samePage(t, c, st, conv, 15, 0, 50) // 16..20: hit
		samePage(t, c, st, conv, 0, 21, 5)  // 16..20: hit
		samePage(t, c, st, conv, 0, 21, 6)  // 15..20: miss
		if got := c.Stats().Hits - h; got != 2 {
			t.Fatalf("hits %d, want 2", got)
		}
		// A batch mixing two conversations with a hole inside one.
		m := commit(t, st, c, 5, 6, 4, false)
		c.Committed(context.Background(), []*store.Message{m[0], m[1], m[3]})
		samePage(t, c, st, store.PairConversationID(5, 6), 0, 0, 10)
		samePage(t, c, st, store.PairConversationID(5, 6), 3, 0, 10)
		samePage(t, c, st, store.PairConversationID(5, 6), 0, 3, 10)
	})
}

// TestRecallReflected: a recalled message is never served with its
// content; a commit racing with the recall is fenced off.
func TestRecallReflected(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b msgcache.Backend) {
		st := openStore(t)
		c := newCache(b, st)
		conv := store.PairConversationID(1, 9)
		msgs := commit(t, st, c, 1, 9, 20, true)
		samePage(t, c, st, conv, 0, 0, 30)
		ctx := context.Background()
		notice := &store.Message{ID: nextID.Add(1), SenderID: 1, Type: store.TypeRecallNotice, IndexUsers: []int64{1, 9}}
		rec, _, err := st.Recall(ctx, msgs[4].ID, notice)
		if err != nil {
			t.Fatal(err)
		}
		c.Recalled(ctx, rec.ConversationID)
		// A late append of the old messages (a commit racing with the
		// recall) is ignored during the fence.
		c.Committed(ctx, msgs)
		got, _, err := c.Messages(ctx, conv, 0, 0, 30)
		if err != nil || len(got) != 21 || got[4].Status != store.StatusRecalled || len(got[4].Content) != 0 {
			t.Fatalf("after recall: %d messages, err %v", len(got), err)
		}
		samePage(t, c, st, conv, 0, 0, 30)
		samePage(t, c, st, conv, 3, 0, 3)
	})
}

// TestHitRatioMetric: the lookups counter follows the cache's stats.
func TestHitRatioMetric(t *testing.T) {
	hit := testutil.ToFloat64(msgcache.MetricLookups("hit"))
	miss := testutil.ToFloat64(msgcache.MetricLookups("miss"))
	st := openStore(t)
	c := newCache(msgcache.NewMemory(msgcache.MemoryConfig{}), st)
	commit(t, st, c, 1, 2, 10, true)
	conv := store.PairConversationID(1, 2)
	for range 3 {
		samePage(t, c, st, conv, 0, 0, 10) // hit
	}
	samePage(t, c, st, store.PairConversationID(1, 3), 0, 0, 10) // miss
	s := c.Stats()
	if s.Hits != 3 || s.Misses != 1 || s.HitRatio() != 0.75 {
		t.Fatalf("stats %+v", s)
	}
	// Other tests may run in parallel: at least these.
	if d := testutil.ToFloat64(msgcache.MetricLookups("hit")) - hit; d < 3 {
		t.Errorf("hit counter +%v", d)
	}
	if d := testutil.ToFloat64(msgcache.MetricLookups("miss")) - miss; d < 1 {
		t.Errorf("miss counter +%v", d)
	}
}

// TestRedisOutage: with Redis gone, pages come from the store without an
// error, failures are counted, and the windows written meanwhile are
// dropped before Redis is used again.
func TestRedisOutage(t *testing.T) {
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rc.Close()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	st := openStore(t)
	c := newCache(newRedisBackend(t, rc, "goimtest:msgcache:"), st, func(cfg *msgcache.Config) { cfg.Now = clock })
	conv := store.PairConversationID(1, 2)
	commit(t, st, c, 1, 2, 10, true)
	samePage(t, c, st, conv, 0, 0, 20)
	if s := c.Stats(); s.Hits != 1 {
		t.Fatalf("before the outage: %+v", s)
	}

	mr.Close()
	samePage(t, c, st, conv, 0, 0, 20) // error: store, no error to the caller
	commit(t, st, c, 1, 2, 5, true)    // 11..15 while down: queued for deletion
	samePage(t, c, st, conv, 0, 0, 20) // bypassed
	s := c.Stats()
	if s.BackendErrors == 0 || s.Hits != 1 || s.Misses != 2 {
		t.Fatalf("during the outage: %+v", s)
	}

	// Redis comes back with its old content (seqs 1..10): the stale
	// window is deleted before the backend is used again.
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Second)
	samePage(t, c, st, conv, 0, 0, 20)
	if n, _ := rc.Exists(context.Background(), "goimtest:msgcache:w:{"+conv+"}").Result(); n != 0 {
		t.Fatalf("stale window still in Redis")
	}
	commit(t, st, c, 1, 2, 5, true) // 16..20: a new window
	h := c.Stats().Hits
	samePage(t, c, st, conv, 15, 0, 20)
	if c.Stats().Hits != h+1 {
		t.Fatalf("no hit after recovery: %+v", c.Stats())
	}
}

// redisAddrOrEmpty is GOIM_TEST_REDIS_ADDR without skipping (benchmarks).
func redisAddrOrEmpty() string { return os.Getenv(testenv.RedisEnv) }

// TestConcurrentCommitsAndReads: pages read while the committer appends
// equal the store's for the seqs already committed (run with -race).
func TestConcurrentCommitsAndReads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b msgcache.Backend) {
		st := openStore(t)
		c := newCache(b, st)
		conv := store.PairConversationID(1, 2)
		var committed atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for committed.Load() < 200 {
				k := 1 + rand.IntN(10)
				commit(t, st, c, 1, 2, k, true)
				committed.Add(int64(k))
			}
		}()
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					top := committed.Load()
					if top < 2 {
						continue
					}
					before := 2 + rand.Int64N(top-1) // <= top+1: immutable seqs only
					got, more, err := c.Messages(context.Background(), conv, 0, before, 1+rand.IntN(30))
					if err != nil {
						t.Error(err)
						return
					}
					want, wantMore, _ := st.Messages(context.Background(), conv, 0, before, len(got))
					if len(got) == 0 || more != wantMore || len(want) != len(got) || got[0].Seq != want[0].Seq || got[len(got)-1].Seq != before-1 {
						t.Errorf("page before %d: %d messages more=%v, store %d more=%v", before, len(got), more, len(want), wantMore)
						return
					}
				}
			}()
		}
		<-done
		wg.Wait()
		if c.Stats().Hits == 0 {
			t.Error("no hit")
		}
	})
}

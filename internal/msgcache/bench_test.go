package msgcache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/msgcache"
	"github.com/goimdev/goim/internal/store"
)

// pageReader is a Messages page read: the store's or the cache's.
type pageReader func(ctx context.Context, conv string, after, before int64, limit int) ([]store.Message, bool, error)

// benchPages times page reads and reports p50/p99 in microseconds.
func benchPages(b *testing.B, read pageReader, pick func(i int) (string, int64, int64, int)) {
	b.Helper()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		conv, after, before, limit := pick(i)
		t0 := time.Now()
		msgs, _, err := read(ctx, conv, after, before, limit)
		lat = append(lat, time.Since(t0))
		if err != nil || len(msgs) == 0 {
			b.Fatalf("page: %d messages, %v", len(msgs), err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}

// BenchmarkHistoryPage: a 50-message history page of a conversation of
// 1000 messages on SQLite, from the store (miss) and from the cache (hit).
func BenchmarkHistoryPage(b *testing.B) {
	const n, page = 1000, 50
	st := openStore(b)
	mem := newCache(msgcache.NewMemory(msgcache.MemoryConfig{WindowSize: 200}), st)
	backends := map[string]*msgcache.Cache{"memory": mem}
	{
		if addr := redisAddrOrEmpty(); addr != "" {
			c := redis.NewClient(&redis.Options{Addr: addr})
			b.Cleanup(func() { c.Close() })
			prefix := fmt.Sprintf("goimbench:msgcache:%016x:", rand.Uint64())
			rb, err := msgcache.NewRedis(c, msgcache.RedisConfig{Prefix: prefix, WindowSize: 200, TTL: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			backends["redis"] = newCache(rb, st)
		}
	}
	for sent := 0; sent < n; sent += 100 {
		msgs := commit(b, st, mem, 1, 2, 100, true)
		for name, c := range backends {
			if name != "memory" {
				c.Committed(context.Background(), msgs)
			}
		}
	}
	conv := store.PairConversationID(1, 2)
	// Pages inside the last 200 messages: the scroll-back of a hot chat.
	pick := func(i int) (string, int64, int64, int) { return conv, 0, int64(n - i%150), page }
	b.Run("store", func(b *testing.B) { benchPages(b, st.Messages, pick) })
	for _, name := range []string{"memory", "redis"} {
		c := backends[name]
		if c == nil {
			continue
		}
		b.Run(name, func(b *testing.B) {
			h := c.Stats().Hits
			benchPages(b, c.Messages, pick)
			if c.Stats().Hits-h < uint64(b.N) {
				b.Fatalf("not every read was a hit: %+v", c.Stats())
			}
		})
	}
}

// BenchmarkHistoryMix: 200 conversations of 300 messages, 20 hot ones
// whose recent messages are cached and 180 cold ones (committed before
// the cache existed); 80% of the reads go to hot conversations, pages of
// 20 anywhere in the last 100 messages. Reports the hit ratio.
func BenchmarkHistoryMix(b *testing.B) {
	const convs, hot, per = 200, 20, 300
	st := openStore(b)
	c := newCache(msgcache.NewMemory(msgcache.MemoryConfig{WindowSize: 200}), st)
	for i := range convs {
		for range per / 100 {
			commit(b, st, c, int64(1000+i), int64(5000+i), 100, i < hot)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(int) (string, int64, int64, int) {
		i := hot + rng.IntN(convs-hot)
		if rng.IntN(10) < 8 {
			i = rng.IntN(hot)
		}
		return store.PairConversationID(int64(1000+i), int64(5000+i)), 0, int64(per + 1 - rng.IntN(100)), 20
	}
	s0 := c.Stats()
	benchPages(b, c.Messages, pick)
	s := c.Stats()
	b.ReportMetric(float64(s.Hits-s0.Hits)/float64(s.Hits+s.Misses-s0.Hits-s0.Misses), "hit-ratio")
}

package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/storetest"
)

// The hot queries use their indexes (no full scan of messages).
func TestMessageQueryPlans(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "goim.db"))
	tests := []struct {
		name, q string
		args    []any
		want    string
	}{
		{"key lookup", keyLookupSQL(2), []any{1, "a", 2, "b"}, "USING INDEX messages_client_msg_id"},
		{"page after", "SELECT " + messageCols + " FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
			[]any{"p_1_2", 0, 10}, "USING INDEX messages_conversation_seq"},
		{"page before", "SELECT " + messageCols + " FROM messages WHERE conversation_id = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?",
			[]any{"p_1_2", 0, 10, 10}, "USING INDEX messages_conversation_seq"},
		{"unread count", `SELECT count(*) FROM messages WHERE conversation_id = ? AND seq > ? AND seq <= ?
			AND sender_id <> ? AND msg_type < ? AND status = 0`, []any{"p_1_2", 0, 10, 1, 100}, "USING INDEX messages_conversation_seq"},
		{"read count", "SELECT count(*) FROM user_conversations WHERE conversation_id = ? AND read_seq >= ?",
			[]any{"g_1", 3}, "USING COVERING INDEX user_conversations_read"},
	}
	for _, tt := range tests {
		rows, err := s.r.Query("EXPLAIN QUERY PLAN "+tt.q, tt.args...)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if !strings.Contains(joined, tt.want) || strings.Contains(joined, "SCAN m ") || slices.Contains(plan, "SCAN messages") {
			t.Errorf("%s: plan %q, want %q", tt.name, joined, tt.want)
		}
	}
}

// Message times come from the store's clock when not given.
func TestAppendClock(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "goim.db"))
	at := time.Date(2031, 1, 31, 23, 59, 59, 999e6, time.UTC)
	s.now = func() time.Time { return at }
	m := storetest.PairMsg(1, 2, "x", "clock")
	res, err := s.AppendMessages(context.Background(), []*store.Message{m})
	if err != nil || !res[0].CreatedAt.Equal(at) {
		t.Fatalf("AppendMessages = %+v, %v; want CreatedAt %v", res, err, at)
	}
}

// benchBatches builds n batches of size one-to-one messages over pairs
// conversations (each message indexes both users).
func benchBatch(size, pairs int, round int) []*store.Message {
	batch := make([]*store.Message, size)
	for i := range batch {
		k := (round*size + i) % pairs
		from, to := int64(1+2*k), int64(2+2*k)
		batch[i] = storetest.PairMsg(from, to, fmt.Sprintf("r%d-%d", round, i), "hello, a message of typical length")
	}
	return batch
}

// BenchmarkAppendMessages measures group commit: one AppendMessages call
// (one transaction) per batch of one-to-one messages over 1000
// conversations. msgs/s is the persisted rate of one caller.
func BenchmarkAppendMessages(b *testing.B) {
	for _, size := range []int{1, 16, 128, 512} {
		b.Run(fmt.Sprint("batch=", size), func(b *testing.B) {
			s := openTest(b, filepath.Join(b.TempDir(), "goim.db"))
			ctx := context.Background()
			b.ReportAllocs()
			var elapsed, cpu time.Duration
			for i := 0; i < b.N; i++ {
				batch := benchBatch(size, 1000, i)
				start, cpu0 := time.Now(), processCPU()
				if _, err := s.AppendMessages(ctx, batch); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				cpu += processCPU() - cpu0
			}
			b.ReportMetric(float64(b.N*size)/elapsed.Seconds(), "msgs/s")
			// CPU per message (user + system, the whole process: the
			// collector included) varies less than msgs/s on a shared
			// machine.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*size), "cpu-µs/msg")
		})
	}
}

// processCPU returns the process's user + system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMessagesPage reads pages of 50 from 100 conversations of 1000
// messages each and reports the latency percentiles.
func BenchmarkMessagesPage(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "goim.db"))
	ctx := context.Background()
	const pairs, per = 100, 1000
	for r := range pairs * per / 500 {
		if _, err := s.AppendMessages(ctx, benchBatch(500, pairs, r)); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % pairs
		conv := store.PairConversationID(int64(1+2*k), int64(2+2*k))
		start := time.Now()
		var err error
		if i%2 == 0 {
			_, _, err = s.Messages(ctx, conv, int64(i%(per-50)), 0, 50)
		} else {
			_, _, err = s.Messages(ctx, conv, 0, int64(51+i%(per-50)), 50)
		}
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

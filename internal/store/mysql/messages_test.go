package mysql

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/storetest"
)

// A conversation whose messages span two month tables: pages, lookups,
// idempotency and recall work across the boundary.
func TestMessagesAcrossMonths(t *testing.T) {
	s := openTest(t, testDSN(t))
	ctx := context.Background()
	jan := time.Date(2031, 1, 31, 23, 59, 59, 0, time.UTC)
	feb := time.Date(2031, 2, 1, 0, 0, 1, 0, time.UTC)
	var sent []*store.Message
	for i := range 10 {
		m := storetest.PairMsg(1, 2, fmt.Sprint("m", i), fmt.Sprint(i))
		m.CreatedAt = jan
		if i >= 6 {
			m.CreatedAt = feb
		}
		sent = append(sent, m)
	}
	if _, err := s.AppendMessages(ctx, sent[:4]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendMessages(ctx, sent[4:]); err != nil { // one batch over both months
		t.Fatal(err)
	}
	for _, table := range []string{"message_203101", "message_203102"} {
		var n int
		if err := s.db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if want := map[string]int{"message_203101": 6, "message_203102": 4}[table]; n != want {
			t.Fatalf("%s holds %d messages, want %d", table, n, want)
		}
	}
	conv := store.PairConversationID(1, 2)
	seqs := func(ms []store.Message) []int64 {
		var out []int64
		for _, m := range ms {
			out = append(out, m.Seq)
		}
		return out
	}
	tests := []struct {
		after, before int64
		limit         int
		want          []int64
		more          bool
	}{
		{0, 0, 100, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false},
		{4, 0, 4, []int64{5, 6, 7, 8}, true},
		{0, 9, 4, []int64{5, 6, 7, 8}, true},
		{0, 8, 10, []int64{1, 2, 3, 4, 5, 6, 7}, false},
		{6, 0, 10, []int64{7, 8, 9, 10}, false},
	}
	for _, tt := range tests {
		got, more, err := s.Messages(ctx, conv, tt.after, tt.before, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seqs(got), tt.want) || more != tt.more {
			t.Errorf("Messages(%d, %d, %d) = %v %v, want %v %v", tt.after, tt.before, tt.limit, seqs(got), more, tt.want, tt.more)
		}
	}
	// Idempotency across months: a retry in February of a January message.
	retry := storetest.PairMsg(1, 2, "m0", "again")
	retry.CreatedAt = feb
	res, err := s.AppendMessages(ctx, []*store.Message{retry})
	if err != nil || !res[0].Duplicate || res[0].ID != sent[0].ID || res[0].Seq != 1 {
		t.Fatalf("retry across months = %+v, %v", res, err)
	}
	got, err := s.MessageByClientID(ctx, 1, "m3")
	if err != nil || got.ID != sent[3].ID || !got.CreatedAt.Equal(jan) {
		t.Fatalf("MessageByClientID(m3) = %+v, %v", got, err)
	}
	// Recall of a January message appends its notice now.
	recalled, nres, err := s.Recall(ctx, sent[1].ID, &store.Message{ID: storetest.NewID(), SenderID: 1, IndexUsers: []int64{1, 2}})
	if err != nil || recalled.Seq != 2 || nres.Seq != 11 {
		t.Fatalf("Recall = %+v %+v, %v", recalled, nres, err)
	}
	page, _, err := s.Messages(ctx, conv, 0, 0, 100)
	if err != nil || len(page) != 11 || page[1].Status != store.StatusRecalled || page[10].Type != store.TypeRecallNotice {
		t.Fatalf("after recall: %d messages, %v", len(page), err)
	}
	cs, err := s.Conversations(ctx, 2, 10)
	if err != nil || len(cs) != 1 || cs[0].LastMessage == nil || cs[0].LastMessage.ID != nres.ID || cs[0].Unread != 9 {
		t.Fatalf("Conversations(2) = %+v, %v", cs, err)
	}
}

func benchBatch(size, pairs, round int) []*store.Message {
	batch := make([]*store.Message, size)
	for i := range batch {
		k := (round*size + i) % pairs
		batch[i] = storetest.PairMsg(int64(1+2*k), int64(2+2*k), fmt.Sprintf("r%d-%d", round, i), "hello, a message of typical length")
	}
	return batch
}

// BenchmarkAppendMessages: group commit on MySQL, one caller, one-to-one
// messages over 1000 conversations.
func BenchmarkAppendMessages(b *testing.B) {
	for _, size := range []int{1, 16, 128, 512} {
		b.Run(fmt.Sprint("batch=", size), func(b *testing.B) {
			s := openTest(b, testDSN(b))
			ctx := context.Background()
			b.ReportAllocs()
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				batch := benchBatch(size, 1000, i)
				start := time.Now()
				if _, err := s.AppendMessages(ctx, batch); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(b.N*size)/elapsed.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkMessagesPage: pages of 50 from 100 conversations of 200
// messages, latency percentiles.
func BenchmarkMessagesPage(b *testing.B) {
	s := openTest(b, testDSN(b))
	ctx := context.Background()
	const pairs, per = 100, 200
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

package msgcache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/store"
)

func FuzzDecodeMessage(f *testing.F) {
	m := store.Message{ID: 7, Seq: 3, SenderID: 1, ReceiverID: 2, Type: 1, Status: 0,
		Content: []byte(`{"text":"hi"}`), ClientMsgID: "c1", Mentions: []int64{2, 5}, CreatedAt: time.UnixMilli(1_700_000_000_123)}
	f.Add(string(appendMessage(nil, &m)))
	f.Add("")
	f.Add("m")
	f.Add("m\x02\x02\x02\x02\x02\x02\x02\x02\x00\x00\xff\xff\xff\xff\x0f")
	f.Fuzz(func(t *testing.T, s string) {
		var got store.Message
		if err := decodeMessage(s, &got); err != nil {
			return
		}
		// What decodes re-encodes to a message that decodes alike (varints
		// may be overlong in the input).
		var again store.Message
		if err := decodeMessage(string(appendMessage(nil, &got)), &again); err != nil {
			t.Fatalf("re-encoded %q: %v", s, err)
		}
		if fmt.Sprint(again) != fmt.Sprint(got) {
			t.Fatalf("round trip %+v -> %+v", got, again)
		}
	})
}

func TestCodecRoundTrip(t *testing.T) {
	for _, m := range []store.Message{
		{ID: 1, Seq: 1, SenderID: 5, Type: 1, Content: []byte("{}"), CreatedAt: time.UnixMilli(1)},
		{ID: 1 << 62, Seq: 1 << 40, SenderID: 5, GroupID: 9, Type: store.TypeRecallNotice, Status: store.StatusRecalled,
			ClientMsgID: "日本", Mentions: []int64{1, 2, 3}, CreatedAt: time.UnixMilli(1_800_000_000_000)},
	} {
		var got store.Message
		if err := decodeMessage(string(appendMessage(nil, &m)), &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(m) && !(len(m.Content) == 0 && len(got.Content) == 0) {
			t.Fatalf("got %+v want %+v", got, m)
		}
	}
	if decodeMessage("x", new(store.Message)) == nil {
		t.Fatal("bad version accepted")
	}
}

// TestMemoryBounds: the window keeps the last K messages and the LRU the
// most recently used conversations.
func TestMemoryBounds(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(MemoryConfig{WindowSize: 4, MaxConversations: memShards})
	run := func(conv string, from, n int64) Run {
		r := Run{ConvID: conv}
		for s := from; s < from+n; s++ {
			r.Msgs = append(r.Msgs, store.Message{Seq: s, ID: s})
		}
		return r
	}
	if _, err := m.Append(ctx, run("p_1_2", 1, 3), run("p_1_2", 4, 3)); err != nil {
		t.Fatal(err)
	}
	w, _ := m.Window(ctx, "p_1_2", 1, 100)
	if w.Lo != 3 || w.Hi != 6 || len(w.Msgs) != 4 || w.Msgs[0].Seq != 3 {
		t.Fatalf("window %+v", w)
	}
	if gaps, _ := m.Append(ctx, run("p_1_2", 9, 10)); gaps != 1 {
		t.Fatalf("gaps %d", gaps)
	}
	if w, _ = m.Window(ctx, "p_1_2", 1, 100); w.Lo != 15 || w.Hi != 18 {
		t.Fatalf("window after gap %+v", w)
	}
	// Far more conversations than the bound: the total stays bounded.
	for i := range 1000 {
		if _, err := m.Append(ctx, run(fmt.Sprintf("g_%d", i+1), 1, 2)); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i := range m.shards {
		total += len(m.shards[i].wins)
	}
	if total > memShards {
		t.Fatalf("%d windows held, bound %d", total, memShards)
	}
	if w, _ := m.Window(ctx, "g_1000", 1, 2); w.Hi != 2 {
		t.Fatalf("most recent conversation evicted: %+v", w)
	}

	// The byte bound: 16 shards of 2 KiB hold few 1 KiB messages.
	m = NewMemory(MemoryConfig{WindowSize: 4, MaxConversations: 1000, MaxBytes: memShards << 11})
	for i := range 200 {
		r := run(fmt.Sprintf("g_%d", i+1), 1, 2)
		for j := range r.Msgs {
			r.Msgs[j].Content = make([]byte, 1024)
		}
		if _, err := m.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range m.shards {
		s := &m.shards[i]
		var sum int64
		for _, w := range s.wins {
			sum += sizeOf(w.msgs)
		}
		if sum != s.bytes || (s.bytes > s.maxBytes && len(s.wins) > 1) {
			t.Fatalf("shard %d: %d bytes accounted, %d held, bound %d, %d windows", i, s.bytes, sum, s.maxBytes, len(s.wins))
		}
	}
}

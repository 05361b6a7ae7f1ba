package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/snowflake"
	"github.com/goimdev/goim/internal/store"
)

var messageTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"AppendAndRead", testAppendAndRead},
	{"AppendInvalid", testAppendInvalid},
	{"SeqConcurrentOneConversation", testSeqConcurrentOne},
	{"SeqConcurrentManyConversations", testSeqConcurrentMany},
	{"IdempotentSequential", testIdempotentSequential},
	{"IdempotentInBatch", testIdempotentInBatch},
	{"IdempotentConcurrent", testIdempotentConcurrent},
	{"Pages", testPages},
	{"ConversationList", testConversationList},
	{"MarkRead", testMarkRead},
	{"MarkDelivered", testMarkDelivered},
	{"MutedAndTotalUnread", testMutedTotalUnread},
	{"Recall", testRecall},
	{"ReadDiffusion", testReadDiffusion},
	{"ReadCount", testReadCount},
	{"Readers", testReaders},
	{"ConversationsAfter", testConversationsAfter},
	{"UnknownConversation", testUnknownConversation},
}

// ids makes the suite's message ids.
var ids = func() *snowflake.Generator {
	g, err := snowflake.New(1)
	if err != nil {
		panic(err)
	}
	return g
}()

// NewID returns a fresh Snowflake id for tests of the store packages.
func NewID() int64 { return ids.Next() }

func msgs(t *testing.T, s store.Store) store.Messages {
	t.Helper()
	m, ok := s.(store.Messages)
	if !ok {
		t.Skipf("%T does not implement store.Messages", s)
	}
	return m
}

// PairMsg returns a text message from -> to indexing both users.
func PairMsg(from, to int64, clientID, text string) *store.Message {
	return &store.Message{
		ID: NewID(), ConversationID: store.PairConversationID(from, to), SenderID: from, ReceiverID: to,
		Type: 1, Content: fmt.Appendf(nil, `{"text":%q}`, text), ClientMsgID: clientID, IndexUsers: []int64{from, to},
	}
}

// GroupMsg returns a text message to a group indexing index.
func GroupMsg(group, from int64, clientID, text string, index ...int64) *store.Message {
	return &store.Message{
		ID: NewID(), ConversationID: store.GroupConversationID(group), SenderID: from, GroupID: group,
		Type: 1, Content: fmt.Appendf(nil, `{"text":%q}`, text), ClientMsgID: clientID, IndexUsers: index,
	}
}

func appendOK(t *testing.T, m store.Messages, batch ...*store.Message) []store.AppendResult {
	t.Helper()
	res, err := m.AppendMessages(ctx(t), batch)
	if err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	if len(res) != len(batch) {
		t.Fatalf("AppendMessages: %d results for %d messages", len(res), len(batch))
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("AppendMessages: message %d: %v", i, r.Err)
		}
	}
	return res
}

func page(t *testing.T, m store.Messages, conv string, after, before int64, limit int) ([]store.Message, bool) {
	t.Helper()
	got, more, err := m.Messages(ctx(t), conv, after, before, limit)
	if err != nil {
		t.Fatalf("Messages(%s, %d, %d, %d): %v", conv, after, before, limit, err)
	}
	return got, more
}

// allMessages reads a whole conversation in pages of 100.
func allMessages(t *testing.T, m store.Messages, conv string) []store.Message {
	t.Helper()
	var all []store.Message
	after := int64(0)
	for {
		p, more := page(t, m, conv, after, 0, 100)
		all = append(all, p...)
		if !more {
			return all
		}
		after = p[len(p)-1].Seq
	}
}

// checkSeqs asserts that a conversation holds the seqs 1..n exactly once,
// ascending.
func checkSeqs(t *testing.T, m store.Messages, conv string, n int) []store.Message {
	t.Helper()
	all := allMessages(t, m, conv)
	if len(all) != n {
		t.Fatalf("%s holds %d messages, want %d", conv, len(all), n)
	}
	for i, msg := range all {
		if msg.Seq != int64(i+1) {
			t.Fatalf("%s: message %d has seq %d", conv, i, msg.Seq)
		}
	}
	c, err := m.Conversation(ctx(t), conv)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxSeq != int64(n) || c.LastMsgID != all[n-1].ID {
		t.Fatalf("%s: max_seq %d last %d, want %d and %d", conv, c.MaxSeq, c.LastMsgID, n, all[n-1].ID)
	}
	return all
}

func sameMessage(t *testing.T, got store.Message, want *store.Message) {
	t.Helper()
	if got.ID != want.ID || got.ConversationID != want.ConversationID || got.Seq != want.Seq ||
		got.SenderID != want.SenderID || got.ReceiverID != want.ReceiverID || got.GroupID != want.GroupID ||
		got.Type != want.Type || !bytes.Equal(got.Content, want.Content) || got.ClientMsgID != want.ClientMsgID ||
		!slices.Equal(got.Mentions, want.Mentions) || got.Status != want.Status ||
		got.CreatedAt.UnixMilli() != want.CreatedAt.UnixMilli() {
		t.Fatalf("message = %+v\nwant %+v", got, *want)
	}
}

func testAppendAndRead(t *testing.T, s store.Store) {
	m := msgs(t, s)
	c := ctx(t)
	at := time.UnixMilli(1_760_000_000_123)
	a := PairMsg(10, 20, "c-1", "hello")
	a.Mentions = []int64{20}
	b := PairMsg(20, 10, "c-1", "hi") // same client id, other sender: not a duplicate
	b.CreatedAt = at
	g := GroupMsg(7, 10, "", "to the group", 10, 20, 30)
	before := time.Now().Add(-time.Second)
	res := appendOK(t, m, a, b, g)
	want := []struct {
		seq int64
		msg *store.Message
	}{{1, a}, {2, b}, {1, g}}
	for i, w := range want {
		r := res[i]
		if r.Duplicate || r.Seq != w.seq || r.ID != w.msg.ID {
			t.Fatalf("result %d = %+v, want seq %d id %d", i, r, w.seq, w.msg.ID)
		}
		if w.msg.Seq != w.seq || !w.msg.CreatedAt.Equal(r.CreatedAt) {
			t.Fatalf("message %d: Seq %d CreatedAt %v not set from result %+v", i, w.msg.Seq, w.msg.CreatedAt, r)
		}
	}
	if !res[1].CreatedAt.Equal(at) {
		t.Fatalf("given CreatedAt changed: %v", res[1].CreatedAt)
	}
	if res[0].CreatedAt.Before(before) || res[0].CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("CreatedAt %v is not now", res[0].CreatedAt)
	}
	for _, w := range []*store.Message{a, b, g} {
		got, err := m.MessageByID(c, w.ID)
		if err != nil {
			t.Fatalf("MessageByID(%d): %v", w.ID, err)
		}
		sameMessage(t, *got, w)
		if w.ClientMsgID != "" {
			got, err = m.MessageByClientID(c, w.SenderID, w.ClientMsgID)
			if err != nil {
				t.Fatalf("MessageByClientID: %v", err)
			}
			sameMessage(t, *got, w)
		}
	}
	if _, err := m.MessageByID(c, NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("MessageByID(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := m.MessageByClientID(c, 10, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("MessageByClientID(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := m.MessageByClientID(c, 10, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("MessageByClientID(empty) = %v, want ErrNotFound", err)
	}
	all := checkSeqs(t, m, a.ConversationID, 2)
	sameMessage(t, all[0], a)
	sameMessage(t, all[1], b)
	conv, err := m.Conversation(c, g.ConversationID)
	if err != nil {
		t.Fatal(err)
	}
	if conv.Kind != store.ConversationGroup || conv.MaxSeq != 1 || conv.LastMsgID != g.ID {
		t.Fatalf("group conversation = %+v", conv)
	}
}

func testAppendInvalid(t *testing.T, s store.Store) {
	m := msgs(t, s)
	good := PairMsg(1, 2, "ok", "fine")
	mk := func(f func(*store.Message)) *store.Message {
		x := PairMsg(1, 2, "", "x")
		f(x)
		return x
	}
	bad := []*store.Message{
		nil,
		mk(func(x *store.Message) { x.ID = 0 }),
		mk(func(x *store.Message) { x.SenderID = 0 }),
		mk(func(x *store.Message) { x.ConversationID = "p_2_1" }),
		mk(func(x *store.Message) { x.ConversationID = "x_1" }),
		mk(func(x *store.Message) { x.ConversationID = "p_1_3" }), // receiver mismatch
		mk(func(x *store.Message) { x.ReceiverID = 3 }),
		mk(func(x *store.Message) { x.GroupID = 3 }),
		mk(func(x *store.Message) { x.Type = 0 }),
		mk(func(x *store.Message) { x.Content = nil }),
		mk(func(x *store.Message) { x.Content = make([]byte, store.MaxContentLen+1) }),
		mk(func(x *store.Message) { x.ClientMsgID = string(make([]byte, store.MaxClientMsgIDLen+1)) }),
		mk(func(x *store.Message) { x.ClientMsgID = "\xff" }),
		mk(func(x *store.Message) { x.Mentions = make([]int64, store.MaxMentions+1) }),
		mk(func(x *store.Message) { x.Status = store.StatusRecalled }),
		mk(func(x *store.Message) { x.IndexUsers = []int64{-1} }),
		{ID: NewID(), ConversationID: "g_5", SenderID: 1, GroupID: 6, Type: 1, Content: []byte("{}")},
	}
	batch := append([]*store.Message{good}, bad...)
	res, err := m.AppendMessages(ctx(t), batch)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Seq != 1 {
		t.Fatalf("good message: %+v", res[0])
	}
	for i, r := range res[1:] {
		if !errors.Is(r.Err, store.ErrInvalid) {
			t.Errorf("bad message %d: %+v, want ErrInvalid", i, r)
		}
	}
	checkSeqs(t, m, good.ConversationID, 1)
	// Only refused messages: no error, nothing stored.
	res, err = m.AppendMessages(ctx(t), bad[1:3])
	if err != nil || !errors.Is(res[0].Err, store.ErrInvalid) || !errors.Is(res[1].Err, store.ErrInvalid) {
		t.Fatalf("all-refused batch = %+v, %v", res, err)
	}
	if _, err := m.AppendMessages(ctx(t), make([]*store.Message, store.MaxAppendBatch+1)); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("oversized batch = %v, want ErrInvalid", err)
	}
	if res, err := m.AppendMessages(ctx(t), nil); err != nil || len(res) != 0 {
		t.Fatalf("empty batch = %v, %v", res, err)
	}
}

// Many concurrent callers append batches into one conversation: every
// seq from 1 to N exactly once, and each caller's messages in its order.
func testSeqConcurrentOne(t *testing.T, s store.Store) {
	m := msgs(t, s)
	const workers, batches = 6, 8
	var wg sync.WaitGroup
	sent := make([][]*store.Message, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				var batch []*store.Message
				for k := range 1 + (w+b)%5 {
					batch = append(batch, PairMsg(100+int64(w%2), 101-int64(w%2), fmt.Sprintf("w%d-b%d-%d", w, b, k), "x"))
				}
				res, err := m.AppendMessages(ctx(t), batch)
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				for i, r := range res {
					if r.Err != nil || r.Duplicate || r.Seq != batch[i].Seq {
						t.Errorf("worker %d: result %+v", w, r)
						return
					}
				}
				sent[w] = append(sent[w], batch...)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	n := 0
	for _, ms := range sent {
		n += len(ms)
		for i := 1; i < len(ms); i++ {
			if ms[i].Seq <= ms[i-1].Seq {
				t.Fatalf("a caller's messages got seqs out of order: %d then %d", ms[i-1].Seq, ms[i].Seq)
			}
		}
	}
	all := checkSeqs(t, m, store.PairConversationID(100, 101), n)
	bySeq := make(map[int64]int64, n)
	for _, msg := range all {
		bySeq[msg.Seq] = msg.ID
	}
	for _, ms := range sent {
		for _, msg := range ms {
			if bySeq[msg.Seq] != msg.ID {
				t.Fatalf("seq %d holds msg %d, the ack said %d", msg.Seq, bySeq[msg.Seq], msg.ID)
			}
		}
	}
}

// Concurrent batches spanning several conversations each.
func testSeqConcurrentMany(t *testing.T, s store.Store) {
	m := msgs(t, s)
	const workers, batches, convs = 6, 6, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				var batch []*store.Message
				for k := range convs {
					// Conversations in a different order per worker.
					g := int64(1 + (k+w)%convs)
					batch = append(batch, GroupMsg(g, 1000+int64(w), "", "x", 1000, 1001, 1002))
					if k%2 == 0 {
						batch = append(batch, PairMsg(1000+int64(w), 2000+g, fmt.Sprintf("w%d-b%d-%d", w, b, k), "y"))
					}
				}
				if _, err := m.AppendMessages(ctx(t), batch); err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for g := int64(1); g <= convs; g++ {
		checkSeqs(t, m, store.GroupConversationID(g), workers*batches)
	}
	perPair := map[string]int{}
	for w := range workers {
		for k := range convs {
			if k%2 == 0 {
				perPair[store.PairConversationID(1000+int64(w), 2000+int64(1+(k+w)%convs))] += batches
			}
		}
	}
	for conv, n := range perPair {
		checkSeqs(t, m, conv, n)
	}
	// Write diffusion: the three indexed users have every group message
	// from the others as unread.
	cs, err := m.Conversations(ctx(t), 1001, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.ConversationID[0] != 'g' {
			continue
		}
		if want := int64(workers-1) * batches; c.Unread != want || c.MaxSeq != workers*batches {
			t.Fatalf("user 1001 %s: unread %d max %d, want %d and %d", c.ConversationID, c.Unread, c.MaxSeq, want, workers*batches)
		}
	}
}

func testIdempotentSequential(t *testing.T, s store.Store) {
	m := msgs(t, s)
	first := PairMsg(1, 2, "same", "first")
	r1 := appendOK(t, m, first)[0]
	retry := PairMsg(1, 2, "same", "retry with a new msg_id")
	other := PairMsg(1, 2, "other", "next")
	res := appendOK(t, m, retry, other)
	if !res[0].Duplicate || res[0].ID != first.ID || res[0].Seq != r1.Seq || !res[0].CreatedAt.Equal(r1.CreatedAt) {
		t.Fatalf("retry = %+v, want the original %+v", res[0], r1)
	}
	if retry.Seq != 0 {
		t.Fatalf("a duplicate got Seq %d set", retry.Seq)
	}
	if res[1].Duplicate || res[1].Seq != 2 {
		t.Fatalf("next message = %+v, want seq 2 (the duplicate consumed no seq)", res[1])
	}
	all := checkSeqs(t, m, first.ConversationID, 2)
	sameMessage(t, all[0], first)
	if _, err := m.MessageByID(ctx(t), retry.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the duplicate's msg_id was stored: %v", err)
	}
}

func testIdempotentInBatch(t *testing.T, s store.Store) {
	m := msgs(t, s)
	a := PairMsg(1, 2, "k", "a")
	b := PairMsg(1, 2, "x", "b")
	a2 := PairMsg(1, 2, "k", "a again")
	a3 := PairMsg(1, 2, "k", "a third time")
	sys := PairMsg(1, 2, "", "no key")
	sys2 := PairMsg(1, 2, "", "no key either")
	res := appendOK(t, m, a, b, a2, sys, a3, sys2)
	want := []struct {
		seq int64
		dup bool
		id  int64
	}{{1, false, a.ID}, {2, false, b.ID}, {1, true, a.ID}, {3, false, sys.ID}, {1, true, a.ID}, {4, false, sys2.ID}}
	for i, w := range want {
		if res[i].Seq != w.seq || res[i].Duplicate != w.dup || res[i].ID != w.id {
			t.Fatalf("result %d = %+v, want %+v", i, res[i], w)
		}
	}
	checkSeqs(t, m, a.ConversationID, 4)
	// The receiver's unread counts the stored messages only.
	cs, err := m.Conversations(ctx(t), 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Unread != 4 {
		t.Fatalf("receiver conversations = %+v, want unread 4", cs)
	}
}

func testIdempotentConcurrent(t *testing.T, s store.Store) {
	m := msgs(t, s)
	const workers, keys = 8, 5
	results := make([][]store.AppendResult, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []*store.Message
			for k := range keys {
				batch = append(batch, PairMsg(5, 6, fmt.Sprintf("key-%d", (k+w)%keys), "retry"))
			}
			res, err := m.AppendMessages(ctx(t), batch)
			if err != nil {
				t.Errorf("worker %d: %v", w, err)
				return
			}
			// Key of each result, in key order.
			out := make([]store.AppendResult, keys)
			for i, r := range res {
				out[(i+w)%keys] = r
			}
			results[w] = out
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	stored := 0
	for k := range keys {
		orig := results[0][k]
		for w := range workers {
			r := results[w][k]
			if r.ID != orig.ID || r.Seq != orig.Seq || !r.CreatedAt.Equal(orig.CreatedAt) {
				t.Fatalf("key %d: worker %d got %+v, worker 0 %+v", k, w, r, orig)
			}
			if !r.Duplicate {
				stored++
			}
		}
	}
	if stored != keys {
		t.Fatalf("%d results were not duplicates, want one per key (%d)", stored, keys)
	}
	checkSeqs(t, m, store.PairConversationID(5, 6), keys)
}

func testPages(t *testing.T, s store.Store) {
	m := msgs(t, s)
	conv := store.PairConversationID(1, 2)
	var batch []*store.Message
	for i := range 25 {
		batch = append(batch, PairMsg(1+int64(i%2), 2-int64(i%2), fmt.Sprint("p", i), fmt.Sprint(i)))
	}
	appendOK(t, m, batch...)
	seqs := func(ms []store.Message) []int64 {
		out := []int64{}
		for _, x := range ms {
			out = append(out, x.Seq)
		}
		return out
	}
	rng := func(from, to int64) []int64 {
		out := []int64{}
		for i := from; i <= to; i++ {
			out = append(out, i)
		}
		return out
	}
	tests := []struct {
		name          string
		after, before int64
		limit         int
		want          []int64
		more          bool
	}{
		{"first page", 0, 0, 10, rng(1, 10), true},
		{"middle", 10, 0, 10, rng(11, 20), true},
		{"last exact", 15, 0, 10, rng(16, 25), false},
		{"last short", 20, 0, 10, rng(21, 25), false},
		{"past the end", 25, 0, 10, rng(1, 0), false},
		{"before end", 0, 26, 10, rng(16, 25), true},
		{"before middle", 0, 16, 10, rng(6, 15), true},
		{"before reaching start", 0, 11, 10, rng(1, 10), false},
		{"before short", 0, 4, 10, rng(1, 3), false},
		{"between", 5, 12, 10, rng(6, 11), false},
		{"between limited", 5, 18, 4, rng(14, 17), true},
		{"before 1", 0, 1, 10, rng(1, 0), false},
		{"limit 1", 24, 0, 1, rng(25, 25), false},
	}
	for _, tt := range tests {
		got, more := page(t, m, conv, tt.after, tt.before, tt.limit)
		if !slices.Equal(seqs(got), tt.want) || more != tt.more {
			t.Errorf("%s: seqs %v more %v, want %v %v", tt.name, seqs(got), more, tt.want, tt.more)
		}
	}
	got, _ := page(t, m, conv, 0, 0, 3)
	for i := range got {
		sameMessage(t, got[i], batch[i])
	}
	for _, limit := range []int{0, -1, store.MaxPageLimit + 1} {
		if _, _, err := m.Messages(ctx(t), conv, 0, 0, limit); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("limit %d: %v, want ErrInvalid", limit, err)
		}
	}
	if _, _, err := m.Messages(ctx(t), conv, -1, 0, 10); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("negative after: %v, want ErrInvalid", err)
	}
	if got, more := page(t, m, "g_999", 0, 0, 10); len(got) != 0 || more {
		t.Errorf("unknown conversation: %d messages", len(got))
	}
}

func conversations(t *testing.T, m store.Messages, user int64) map[string]store.UserConversation {
	t.Helper()
	cs, err := m.Conversations(ctx(t), user, 100)
	if err != nil {
		t.Fatalf("Conversations(%d): %v", user, err)
	}
	out := make(map[string]store.UserConversation, len(cs))
	for _, c := range cs {
		out[c.ConversationID] = c
	}
	return out
}

func testConversationList(t *testing.T, s store.Store) {
	m := msgs(t, s)
	base := time.UnixMilli(1_760_000_000_000)
	at := func(x *store.Message, sec int) *store.Message {
		x.CreatedAt = base.Add(time.Duration(sec) * time.Second)
		return x
	}
	appendOK(t, m, at(PairMsg(1, 2, "a", "1->2"), 1))
	appendOK(t, m, at(PairMsg(2, 1, "b", "2->1"), 2), at(PairMsg(1, 3, "c", "1->3"), 2))
	last12 := at(PairMsg(2, 1, "d", "2->1 again"), 3)
	appendOK(t, m, last12)
	g := at(GroupMsg(9, 3, "e", "group", 1, 2, 3), 4)
	appendOK(t, m, g)

	cs, err := m.Conversations(ctx(t), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	order := []string{}
	for _, c := range cs {
		order = append(order, c.ConversationID)
	}
	// Most recently active first (the last message's time).
	if len(order) != 3 || order[0] != "g_9" {
		t.Fatalf("user 1 conversations %v, want 3 with g_9 first", order)
	}
	byID := conversations(t, m, 1)
	want := map[string]struct {
		max, read, unread int64
		last              int64
	}{
		"p_1_2": {3, 0, 2, last12.ID},
		"p_1_3": {1, 0, 0, 0},
		"g_9":   {1, 0, 1, g.ID},
	}
	for id, w := range want {
		c, ok := byID[id]
		if !ok {
			t.Fatalf("user 1 lacks %s", id)
		}
		if c.MaxSeq != w.max || c.ReadSeq != w.read || c.Unread != w.unread || c.LastMessage == nil {
			t.Fatalf("user 1 %s = %+v, want %+v", id, c, w)
		}
		if w.last != 0 {
			sameMessage(t, *c.LastMessage, map[string]*store.Message{"p_1_2": last12, "g_9": g}[id])
		}
	}
	if c := conversations(t, m, 2)["p_1_2"]; c.Unread != 1 {
		t.Fatalf("user 2 p_1_2 unread %d, want 1", c.Unread)
	}
	if c := conversations(t, m, 3)["g_9"]; c.Unread != 0 {
		t.Fatalf("the sender's own group message counts as unread: %+v", c)
	}
	if len(conversations(t, m, 4)) != 0 {
		t.Fatal("a user without messages has conversations")
	}
	if cs, err := m.Conversations(ctx(t), 1, 2); err != nil || len(cs) != 2 {
		t.Fatalf("limit 2: %d conversations, %v", len(cs), err)
	}
	if _, err := m.Conversations(ctx(t), 1, 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("limit 0: %v, want ErrInvalid", err)
	}
	total, err := m.TotalUnread(ctx(t), 1)
	if err != nil || total != 3 {
		t.Fatalf("TotalUnread(1) = %d, %v, want 3", total, err)
	}
}

func readState(t *testing.T, m store.Messages, user int64, conv string, seq int64) store.ReadState {
	t.Helper()
	st, err := m.MarkRead(ctx(t), user, conv, seq)
	if err != nil {
		t.Fatalf("MarkRead(%d, %s, %d): %v", user, conv, seq, err)
	}
	return st
}

func testMarkRead(t *testing.T, s store.Store) {
	m := msgs(t, s)
	conv := store.PairConversationID(1, 2)
	// seq: 1 from 2, 2 from 1 (own), 3 from 2, 4 system, 5 from 2, 6 from 2
	sys := PairMsg(2, 1, "", "system")
	sys.Type = store.SystemTypeMin + 1
	appendOK(t, m, PairMsg(2, 1, "a", "1"), PairMsg(1, 2, "b", "2"), PairMsg(2, 1, "c", "3"), sys,
		PairMsg(2, 1, "d", "5"), PairMsg(2, 1, "e", "6"))
	if c := conversations(t, m, 1)[conv]; c.Unread != 4 {
		t.Fatalf("unread %d, want 4 (own and system messages excluded)", c.Unread)
	}
	steps := []struct {
		seq              int64
		read, unread     int64
		advanced         bool
		listRead, listUn int64
	}{
		{2, 2, 3, true, 2, 3},
		{1, 2, 3, false, 2, 3}, // backwards: ignored
		{2, 2, 3, false, 2, 3}, // same: not advanced
		{4, 4, 2, true, 4, 2},
		{100, 6, 0, true, 6, 0}, // clamped to max_seq
		{6, 6, 0, false, 6, 0},
	}
	for _, st := range steps {
		got := readState(t, m, 1, conv, st.seq)
		if got.ReadSeq != st.read || got.Unread != st.unread || got.Advanced != st.advanced || got.MaxSeq != 6 {
			t.Fatalf("MarkRead(%d) = %+v, want read %d unread %d advanced %v", st.seq, got, st.read, st.unread, st.advanced)
		}
		c := conversations(t, m, 1)[conv]
		if c.ReadSeq != st.listRead || c.Unread != st.listUn {
			t.Fatalf("after MarkRead(%d): list read %d unread %d, want %d %d", st.seq, c.ReadSeq, c.Unread, st.listRead, st.listUn)
		}
	}
	// New messages after reading count again; the other side is untouched.
	appendOK(t, m, PairMsg(2, 1, "f", "7"))
	if c := conversations(t, m, 1)[conv]; c.Unread != 1 || c.ReadSeq != 6 {
		t.Fatalf("after a new message: %+v, want unread 1", c)
	}
	if c := conversations(t, m, 2)[conv]; c.Unread != 1 || c.ReadSeq != 0 {
		t.Fatalf("user 2: %+v, want unread 1 (message 2)", c)
	}
	if _, err := m.MarkRead(ctx(t), 1, conv, -1); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("negative seq: %v, want ErrInvalid", err)
	}
	if _, err := m.MarkRead(ctx(t), 1, "p_1_99", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown conversation: %v, want ErrNotFound", err)
	}
}

func testMarkDelivered(t *testing.T, s store.Store) {
	m := msgs(t, s)
	conv := store.PairConversationID(1, 2)
	appendOK(t, m, PairMsg(1, 2, "a", "1"), PairMsg(1, 2, "b", "2"), PairMsg(1, 2, "c", "3"))
	steps := []struct {
		dev      string
		seq      int64
		advanced bool
		user     int64 // the user's DeliveredSeq after
	}{
		{"phone", 1, true, 1},
		{"phone", 1, false, 1},
		{"phone", 0, false, 1},
		{"laptop", 3, true, 3},
		{"phone", 2, true, 3},
		{"laptop", 2, false, 3},
		{"phone", 50, true, 3}, // clamped to 3
		{"phone", 4, false, 3},
	}
	for _, st := range steps {
		adv, err := m.MarkDelivered(ctx(t), 2, st.dev, conv, st.seq)
		if err != nil || adv != st.advanced {
			t.Fatalf("MarkDelivered(%s, %d) = %v, %v, want %v", st.dev, st.seq, adv, err, st.advanced)
		}
		if c := conversations(t, m, 2)[conv]; c.DeliveredSeq != st.user {
			t.Fatalf("after MarkDelivered(%s, %d): user delivered %d, want %d", st.dev, st.seq, c.DeliveredSeq, st.user)
		}
	}
	if _, err := m.MarkDelivered(ctx(t), 2, "", conv, 1); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("empty device: %v, want ErrInvalid", err)
	}
	if _, err := m.MarkDelivered(ctx(t), 2, "phone", "g_404", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown conversation: %v, want ErrNotFound", err)
	}
}

func testMutedTotalUnread(t *testing.T, s store.Store) {
	m := msgs(t, s)
	appendOK(t, m, PairMsg(2, 1, "a", "x"), PairMsg(2, 1, "b", "y"), PairMsg(3, 1, "c", "z"), GroupMsg(4, 2, "d", "g", 1, 2))
	total := func() int64 {
		n, err := m.TotalUnread(ctx(t), 1)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := total(); n != 4 {
		t.Fatalf("TotalUnread = %d, want 4", n)
	}
	if err := m.SetConversationMuted(ctx(t), 1, "p_1_2", true); err != nil {
		t.Fatal(err)
	}
	if n := total(); n != 2 {
		t.Fatalf("TotalUnread with p_1_2 muted = %d, want 2", n)
	}
	if c := conversations(t, m, 1)["p_1_2"]; !c.Muted || c.Unread != 2 {
		t.Fatalf("muted entry = %+v", c)
	}
	if err := m.SetConversationMuted(ctx(t), 1, "p_1_2", false); err != nil {
		t.Fatal(err)
	}
	if n := total(); n != 4 {
		t.Fatalf("TotalUnread unmuted = %d, want 4", n)
	}
	if err := m.SetConversationMuted(ctx(t), 1, "p_1_77", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("muting an unknown conversation: %v, want ErrNotFound", err)
	}
	if n, err := m.TotalUnread(ctx(t), 999); err != nil || n != 0 {
		t.Fatalf("TotalUnread(unknown) = %d, %v", n, err)
	}
}

func testRecall(t *testing.T, s store.Store) {
	m := msgs(t, s)
	conv := store.PairConversationID(1, 2)
	a, b, c := PairMsg(1, 2, "a", "one"), PairMsg(1, 2, "b", "two"), PairMsg(2, 1, "c", "three")
	appendOK(t, m, a, b, c)
	readState(t, m, 2, conv, 1) // user 2 read a, not b
	notice := &store.Message{ID: NewID(), SenderID: 1, IndexUsers: []int64{1, 2}}
	recalled, res, err := m.Recall(ctx(t), b.ID, notice)
	if err != nil {
		t.Fatalf("Recall: %v", err)
	}
	if recalled.ID != b.ID || recalled.Seq != 2 || recalled.Status != store.StatusRecalled || len(recalled.Content) != 0 {
		t.Fatalf("recalled = %+v", recalled)
	}
	if res.Seq != 4 || res.ID != notice.ID || res.Duplicate || res.Err != nil || notice.Seq != 4 {
		t.Fatalf("notice result = %+v", res)
	}
	all := checkSeqs(t, m, conv, 4)
	if all[1].Status != store.StatusRecalled || len(all[1].Content) != 0 || all[1].Seq != 2 {
		t.Fatalf("page shows the recalled message as %+v", all[1])
	}
	n := all[3]
	if n.Type != store.TypeRecallNotice || n.SenderID != 1 || n.ReceiverID != 2 || n.ConversationID != conv ||
		string(n.Content) != fmt.Sprintf(`{"msg_id":"%d","seq":2}`, b.ID) {
		t.Fatalf("notice = %+v %s", n, n.Content)
	}
	got, err := m.MessageByID(ctx(t), b.ID)
	if err != nil || got.Status != store.StatusRecalled || len(got.Content) != 0 {
		t.Fatalf("MessageByID(recalled) = %+v, %v", got, err)
	}
	// The recalled message no longer counts; the notice never does.
	if c := conversations(t, m, 2)[conv]; c.Unread != 0 || c.MaxSeq != 4 || c.LastMessage == nil || c.LastMessage.ID != notice.ID {
		t.Fatalf("user 2 after recall: %+v", c)
	}
	if st := readState(t, m, 2, conv, 2); st.Unread != 0 {
		t.Fatalf("user 2 MarkRead(2) unread %d, want 0", st.Unread)
	}
	if c := conversations(t, m, 1)[conv]; c.Unread != 1 {
		t.Fatalf("user 1 after recall: unread %d, want 1 (message c)", c.Unread)
	}
	// Twice: a conflict, no second notice.
	if _, _, err := m.Recall(ctx(t), b.ID, &store.Message{ID: NewID(), SenderID: 1}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second recall: %v, want ErrConflict", err)
	}
	if _, _, err := m.Recall(ctx(t), NewID(), &store.Message{ID: NewID(), SenderID: 1}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("recall of an unknown message: %v, want ErrNotFound", err)
	}
	checkSeqs(t, m, conv, 4)
	// A group recall by an admin: the notice has the group's fields.
	g := GroupMsg(8, 5, "g", "oops", 5, 6)
	appendOK(t, m, g)
	_, res, err = m.Recall(ctx(t), g.ID, &store.Message{ID: NewID(), SenderID: 6, IndexUsers: []int64{5, 6}})
	if err != nil || res.Seq != 2 {
		t.Fatalf("group recall: %+v, %v", res, err)
	}
	gm := checkSeqs(t, m, "g_8", 2)
	if gm[1].GroupID != 8 || gm[1].SenderID != 6 || gm[0].Status != store.StatusRecalled {
		t.Fatalf("group after recall: %+v", gm)
	}
	if c := conversations(t, m, 6)["g_8"]; c.Unread != 0 {
		t.Fatalf("member unread after the group recall: %d, want 0", c.Unread)
	}
}

// A large group: no index users on write, entries created by MarkRead,
// unread computed on read.
func testReadDiffusion(t *testing.T, s store.Store) {
	m := msgs(t, s)
	conv := store.GroupConversationID(50)
	var batch []*store.Message
	for i := range 10 {
		batch = append(batch, GroupMsg(50, 1+int64(i%3), fmt.Sprint("rd", i), "x")) // senders 1,2,3
	}
	appendOK(t, m, batch...)
	for _, u := range []int64{1, 2, 3, 4} {
		if _, ok := conversations(t, m, u)[conv]; ok {
			t.Fatalf("user %d has an entry for a read-diffusion group", u)
		}
	}
	if n, err := m.ReadCount(ctx(t), conv, 1); err != nil || n != 0 {
		t.Fatalf("ReadCount before any read = %d, %v", n, err)
	}
	st := readState(t, m, 4, conv, 0) // created lazily, nothing read
	if st.ReadSeq != 0 || st.Unread != 10 || st.MaxSeq != 10 || st.Advanced {
		t.Fatalf("MarkRead(0) creating the entry = %+v", st)
	}
	st = readState(t, m, 1, conv, 4) // user 1 sent seqs 1,4,7,10
	if st.ReadSeq != 4 || st.Unread != 4 || !st.Advanced {
		t.Fatalf("user 1 MarkRead(4) = %+v, want unread 4 (5,6,8,9)", st)
	}
	// More messages with no index users: the entries' unread follow.
	appendOK(t, m, GroupMsg(50, 2, "rd-a", "y"), GroupMsg(50, 1, "rd-b", "z"))
	if c := conversations(t, m, 4)[conv]; c.Unread != 12 || c.MaxSeq != 12 || c.LastMessage == nil {
		t.Fatalf("user 4: %+v, want unread 12", c)
	}
	if c := conversations(t, m, 1)[conv]; c.Unread != 5 || c.ReadSeq != 4 {
		t.Fatalf("user 1: %+v, want unread 5", c)
	}
	if n, err := m.TotalUnread(ctx(t), 1); err != nil || n != 5 {
		t.Fatalf("TotalUnread(1) = %d, %v, want 5", n, err)
	}
	// A recall in the tail is seen by the read-time count.
	if _, _, err := m.Recall(ctx(t), batch[5].ID, &store.Message{ID: NewID(), SenderID: 3}); err != nil {
		t.Fatal(err)
	}
	if c := conversations(t, m, 4)[conv]; c.Unread != 11 || c.MaxSeq != 13 {
		t.Fatalf("user 4 after recall: %+v, want unread 11 max 13", c)
	}
	if c := conversations(t, m, 1)[conv]; c.Unread != 4 {
		t.Fatalf("user 1 after recall: unread %d, want 4", c.Unread)
	}
	// Switching to write diffusion later (the group shrank): the entries
	// that lag keep exact counts.
	appendOK(t, m, GroupMsg(50, 2, "rd-c", "w", 1, 2, 4))
	if c := conversations(t, m, 4)[conv]; c.Unread != 12 {
		t.Fatalf("user 4 after a write-diffusion message: unread %d, want 12", c.Unread)
	}
	// Users 1 (read 4) and 2 (a new entry starts at the seq before the
	// batch that created it: 13).
	if n, err := m.ReadCount(ctx(t), conv, 4); err != nil || n != 2 {
		t.Fatalf("ReadCount(4) = %d, %v, want 2", n, err)
	}
}

func testReadCount(t *testing.T, s store.Store) {
	m := msgs(t, s)
	conv := store.GroupConversationID(3)
	members := []int64{1, 2, 3, 4}
	appendOK(t, m, GroupMsg(3, 1, "a", "1", members...), GroupMsg(3, 1, "b", "2", members...), GroupMsg(3, 2, "c", "3", members...))
	readState(t, m, 2, conv, 2)
	readState(t, m, 3, conv, 3)
	readState(t, m, 4, conv, 1)
	for _, tt := range []struct {
		seq  int64
		want int
	}{{1, 3}, {2, 2}, {3, 1}, {4, 0}} {
		n, err := m.ReadCount(ctx(t), conv, tt.seq)
		if err != nil || n != tt.want {
			t.Errorf("ReadCount(%d) = %d, %v, want %d", tt.seq, n, err, tt.want)
		}
	}
}

func testUnknownConversation(t *testing.T, s store.Store) {
	m := msgs(t, s)
	if _, err := m.Conversation(ctx(t), "p_1_2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Conversation(unknown) = %v, want ErrNotFound", err)
	}
	if n, err := m.ReadCount(ctx(t), "g_1", 1); err != nil || n != 0 {
		t.Fatalf("ReadCount(unknown) = %d, %v", n, err)
	}
}

// testReaders: the users whose cursor is at or past a seq; an entry made
// by muting has read nothing.
func testReaders(t *testing.T, s store.Store) {
	m := msgs(t, s)
	conv := store.GroupConversationID(4)
	appendOK(t, m, GroupMsg(4, 1, "ra", "1"), GroupMsg(4, 2, "rb", "2")) // read diffusion: no entries
	readState(t, m, 2, conv, 2)
	readState(t, m, 3, conv, 1)
	if err := m.SetConversationMuted(ctx(t), 5, conv, true); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		seq  int64
		want []int64
	}{{1, []int64{2, 3}}, {2, []int64{2}}, {3, nil}} {
		got, err := m.Readers(ctx(t), conv, tt.seq)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Readers(%d) = %v, %v, want %v", tt.seq, got, err, tt.want)
		}
	}
	if c := conversations(t, m, 5)[conv]; !c.Muted || c.ReadSeq != 0 || c.Unread != 2 {
		t.Fatalf("entry made by muting = %+v, want read_seq 0, unread 2", c)
	}
}

// testConversationsAfter: paging with cursors visits the list once, in
// order.
func testConversationsAfter(t *testing.T, s store.Store) {
	m := msgs(t, s)
	for i := range 7 {
		appendOK(t, m, PairMsg(int64(10+i), 9, fmt.Sprint("ca", i), "x"))
	}
	all, err := m.Conversations(ctx(t), 9, 100)
	if err != nil || len(all) != 7 {
		t.Fatalf("Conversations = %d, %v", len(all), err)
	}
	var got []string
	var after store.ConversationCursor
	for range 10 {
		page, err := m.ConversationsAfter(ctx(t), 9, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			got = append(got, c.ConversationID)
		}
		if len(page) < 3 {
			break
		}
		last := page[len(page)-1]
		after = store.ConversationCursor{UpdatedAt: last.UpdatedAt, ConversationID: last.ConversationID}
	}
	var want []string
	for _, c := range all {
		want = append(want, c.ConversationID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %v, want %v", got, want)
	}
}

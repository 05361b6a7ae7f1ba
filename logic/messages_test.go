package logic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// TestSendPair: a one-to-one message is acknowledged with its seq after
// the commit; the recipient's devices and the sender's other devices get
// the event, the sending connection does not; Sync, the conversation list
// and unread counts follow.
func TestSendPair(t *testing.T) {
	forEachMsgStore(t, testSendPair)
}

func testSendPair(t *testing.T, e *env) {
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	a1, a2 := e.online(t, alice, "a1", testComet), e.online(t, alice, "a2", testComet)
	b1 := e.online(t, bob, "b1", testComet)
	e.events(t) // forget the setup's events
	conv := store.PairConversationID(alice.id, bob.id)

	ack := e.sendOK(t, alice, a1, text("c-1", bob.id, 0, "hello"))
	if ack["conversation_id"] != conv || numTB(t, ack["seq"]) != 1 || ack["client_msg_id"] != "c-1" {
		t.Fatalf("ack %v", ack)
	}
	if id, _ := ack["msg_id"].(string); id == "" || numTB(t, ack["created_at_ms"]) <= 0 {
		t.Fatalf("ack %v: msg_id must be a non-empty string", ack)
	}
	c := &collector{e: e}
	evs := c.waitFor(t, "message event", func(evs []event) bool { return countType(evs, evMessage) >= 2 })
	got := byKey(evs)
	if len(got[a1]) != 0 {
		t.Fatalf("the sending connection got %v", got[a1])
	}
	for _, k := range []string{a2, b1} {
		ev := wantEvent(t, got, k, evMessage, nil)
		m := msgOf(t, ev)
		if m["msg_id"] != ack["msg_id"] || numTB(t, m["seq"]) != 1 || numTB(t, m["sender_id"]) != alice.id ||
			numTB(t, m["receiver_id"]) != bob.id || fmt.Sprint(m["content"]) != "map[text:hello]" || numTB(t, m["status"]) != 0 {
			t.Fatalf("device %s: message %v", k, m)
		}
	}

	// Over HTTP (no connection): every device of the sender gets it.
	st, m := e.call(t, bob, "POST", "/api/v1/messages", text("c-2", alice.id, 0, "hi alice"))
	if st != http.StatusOK || numTB(t, m["seq"]) != 2 || fmt.Sprint(m["code"]) != "0" {
		t.Fatalf("HTTP send: %d %v", st, m)
	}
	c.all = nil
	evs = c.waitFor(t, "HTTP message events", func(evs []event) bool { return countType(evs, evMessage) >= 3 })
	got = byKey(evs)
	for _, k := range []string{a1, a2, b1} {
		wantEvent(t, got, k, evMessage, nil)
	}

	// Sync and the conversation list.
	r := e.reply(t, bob, b1, protocol.OpSync, map[string]any{"conversation_id": conv, "after_seq": 0})
	msgs := list(t, r, "messages")
	if fmt.Sprint(r["code"]) != "0" || len(msgs) != 2 || r["has_more"] != false || numTB(t, msgs[0]["seq"]) != 1 || numTB(t, msgs[1]["seq"]) != 2 {
		t.Fatalf("sync %v", r)
	}
	r = e.reply(t, bob, b1, protocol.OpSync, map[string]any{"conversations": true})
	convs := list(t, r, "conversations")
	if len(convs) != 1 || convs[0]["conversation_id"] != conv || numTB(t, convs[0]["max_seq"]) != 2 || numTB(t, convs[0]["unread"]) != 1 {
		t.Fatalf("bob's conversations %v", r)
	}
	if lm, _ := convs[0]["last_message"].(map[string]any); lm == nil || numTB(t, lm["seq"]) != 2 {
		t.Fatalf("last message %v", convs[0])
	}
	m = e.ok(t, alice, http.StatusOK, "GET", "/api/v1/conversations", nil)
	if numTB(t, m["total_unread"]) != 1 || numTB(t, list(t, m, "conversations")[0]["unread"]) != 1 {
		t.Fatalf("alice's conversations %v", m)
	}
}

// TestConcurrentSenders: many concurrent senders into one group and into
// one pair get every seq from 1 to N exactly once, each sender's messages
// in the order it sent them, and every online device gets every message
// event exactly once, in seq order.
func TestConcurrentSenders(t *testing.T) {
	forEachMsgStore(t, testConcurrentSenders, noRateLimit)
}

func testConcurrentSenders(t *testing.T, e *env) {
	const senders, each = 8, 25
	owner := e.user(t, "owner")
	var members []tuser
	for i := range senders {
		members = append(members, e.user(t, fmt.Sprintf("member%d", i)))
	}
	group := e.newGroup(t, owner, members...)
	watcher := e.online(t, owner, "w", testComet)
	keys := make([]string, senders)
	for i, u := range members {
		keys[i] = e.online(t, u, "d", testComet)
	}
	e.events(t)

	run := func(to func(i int) map[string]any, who func(i int) tuser) map[int][]int64 {
		seqs := make(map[int][]int64)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []int64
				for j := range each {
					req := to(i)
					req["client_msg_id"] = fmt.Sprintf("s%d-%d-%v", i, j, req["group_id"])
					ack := e.sendOK(t, who(i), keys[i], req)
					mine = append(mine, numTB(t, ack["seq"]))
				}
				mu.Lock()
				seqs[i] = mine
				mu.Unlock()
			}()
		}
		wg.Wait()
		return seqs
	}
	check := func(what string, seqs map[int][]int64, n int) {
		t.Helper()
		var all []int64
		for i, s := range seqs {
			if !slices.IsSorted(s) {
				t.Fatalf("%s: sender %d got seqs %v out of order", what, i, s)
			}
			all = append(all, s...)
		}
		slices.Sort(all)
		for i, s := range all {
			if s != int64(i+1) {
				t.Fatalf("%s: seqs %v, want 1..%d exactly once", what, all, n)
			}
		}
	}

	// Group: every member sends; everyone is online.
	gseqs := run(func(int) map[string]any { return text("", 0, group, "hi group") }, func(i int) tuser { return members[i] })
	n := senders * each
	check("group", gseqs, n)
	c := &collector{e: e}
	// Each message reaches the watcher and every member but its sender's connection.
	evs := c.waitFor(t, "group events", func(evs []event) bool { return countType(evs, evMessage) >= n*senders })
	got := byKey(evs)
	for _, k := range append([]string{watcher}, keys...) {
		var seqs []int64
		for _, b := range got[k] {
			if b["type"] == evMessage {
				seqs = append(seqs, numTB(t, msgOf(t, b)["seq"]))
			}
		}
		want := n
		if k != watcher {
			want = n - each
		}
		if len(seqs) != want || !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != want {
			t.Fatalf("device %s got %d message events (want %d, each once, in seq order): %v", k, len(seqs), want, seqs)
		}
	}
	if c := countType(evs, evMessage); c != n*senders {
		t.Fatalf("%d message deliveries, want %d", c, n*senders)
	}

	// Pair: every member writes to the owner concurrently... into one
	// pair: members[0] and members[1] both sending on several goroutines.
	a, b := members[0], members[1]
	pseqs := run(func(i int) map[string]any {
		if i%2 == 0 {
			return text("", b.id, 0, "to b")
		}
		return text("", a.id, 0, "to a")
	}, func(i int) tuser {
		if i%2 == 0 {
			return a
		}
		return b
	})
	check("pair", pseqs, n)
	// a's and b's devices get every pair message once, in seq order, but
	// the ones sent on themselves (goroutines 0 and 1 use their keys).
	c.all = nil
	evs = c.waitFor(t, "pair events", func(evs []event) bool { return countType(evs, evMessage) >= 2*(n-each) })
	got = byKey(evs)
	for _, k := range keys[:2] {
		var seqs []int64
		for _, b := range got[k] {
			if b["type"] == evMessage {
				seqs = append(seqs, numTB(t, msgOf(t, b)["seq"]))
			}
		}
		if len(seqs) != n-each || !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != n-each {
			t.Fatalf("device %s got %d pair events (want %d, each once, in seq order): %v", k, len(seqs), n-each, seqs)
		}
	}
	msgs, more, err := e.svc.msgs.Messages(context.Background(), store.PairConversationID(a.id, b.id), 0, 0, store.MaxPageLimit)
	if err != nil || more || len(msgs) != n {
		t.Fatalf("pair messages: %d, more %v, err %v", len(msgs), more, err)
	}
}

// TestSendIdempotent: concurrent retries of one client_msg_id store one
// message and all get its msg_id and seq; no second event.
func TestSendIdempotent(t *testing.T) {
	forEachMsgStore(t, testSendIdempotent, noRateLimit)
}

func testSendIdempotent(t *testing.T, e *env) {
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	b1 := e.online(t, bob, "b1", testComet)
	e.events(t)
	const retries = 16
	acks := make([]map[string]any, retries)
	var wg sync.WaitGroup
	for i := range retries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acks[i] = e.sendOK(t, alice, fmt.Sprintf("k%d", i), text("same-id", bob.id, 0, "once"))
		}()
	}
	wg.Wait()
	for _, a := range acks {
		if a["msg_id"] != acks[0]["msg_id"] || numTB(t, a["seq"]) != 1 {
			t.Fatalf("acks differ: %v vs %v", a, acks[0])
		}
	}
	// A later retry too.
	if a := e.sendOK(t, alice, "late", text("same-id", bob.id, 0, "once")); a["msg_id"] != acks[0]["msg_id"] {
		t.Fatalf("late retry %v", a)
	}
	msgs, _, err := e.svc.msgs.Messages(context.Background(), store.PairConversationID(alice.id, bob.id), 0, 0, 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d messages stored (%v), want 1", len(msgs), err)
	}
	// One event only: send a second message and wait for its event.
	e.sendOK(t, alice, "late", text("other-id", bob.id, 0, "twice"))
	c := &collector{e: e}
	evs := c.waitFor(t, "events", func(evs []event) bool { return countType(evs, evMessage) >= 2 })
	if n := len(byKey(evs)[b1]); n != 2 {
		t.Fatalf("bob got %d events, want 2", n)
	}
}

// TestRetryAfterRefusalCause: a retry of an acknowledged message gets its
// original SendAck even when a new send would now be refused (the
// recipient blocked the sender, the sender is rate limited).
func TestRetryAfterRefusalCause(t *testing.T) {
	forEachMsgStore(t, testRetryAfterRefusalCause, func(c *Config) { c.SendBurst = 1; c.SendRate = 0.001 })
}

func testRetryAfterRefusalCause(t *testing.T, e *env) {
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	first := e.sendOK(t, alice, "a1", text("kept", bob.id, 0, "hello"))
	// The burst of 1 is spent: a new message is rate limited...
	e.sendRefused(t, alice, "a1", text("new", bob.id, 0, "again"), protocol.CodeRateLimited)
	// ...but the retry of the acknowledged one is answered as before.
	if again := e.sendOK(t, alice, "a1", text("kept", bob.id, 0, "hello")); again["msg_id"] != first["msg_id"] || again["seq"] != first["seq"] || again["conversation_id"] != first["conversation_id"] {
		t.Fatalf("retry while rate limited: %v, want the original %v", again, first)
	}
}

// TestRetryAfterBlock: the recipient blocks the sender after a message was
// acknowledged: new messages get blocked, the retry its original SendAck.
func TestRetryAfterBlock(t *testing.T) {
	forEachMsgStore(t, testRetryAfterBlock, noRateLimit)
}

func testRetryAfterBlock(t *testing.T, e *env) {
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	first := e.sendOK(t, alice, "a1", text("kept", bob.id, 0, "hello"))
	e.ok(t, bob, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", alice.id), nil)
	e.sendRefused(t, alice, "a1", text("new", bob.id, 0, "blocked?"), protocol.CodeBlocked)
	if again := e.sendOK(t, alice, "a1", text("kept", bob.id, 0, "hello")); again["msg_id"] != first["msg_id"] || again["seq"] != first["seq"] {
		t.Fatalf("retry after a block: %v, want the original %v", again, first)
	}
}

// TestOfflineSync: an offline device recovers every message by Sync,
// page by page, and learns of a recall by the notice.
func TestOfflineSync(t *testing.T) {
	forEachMsgStore(t, testOfflineSync, noRateLimit)
}

func testOfflineSync(t *testing.T, e *env) {
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	conv := store.PairConversationID(alice.id, bob.id)
	const n = 120
	var ids []string
	for i := range n {
		ack := e.sendOK(t, alice, "a1", text(fmt.Sprintf("m%d", i), bob.id, 0, fmt.Sprint("message ", i)))
		ids = append(ids, ack["msg_id"].(string))
	}
	// bob comes online and syncs from 0 in pages of 50.
	var seqs []int64
	after := int64(0)
	for pages := 0; ; pages++ {
		r := e.reply(t, bob, "b1", protocol.OpSync, map[string]any{"conversation_id": conv, "after_seq": after, "limit": 50})
		page := list(t, r, "messages")
		for _, m := range page {
			seqs = append(seqs, numTB(t, m["seq"]))
		}
		if len(page) > 0 {
			after = numTB(t, page[len(page)-1]["seq"])
		}
		if r["has_more"] != true {
			break
		}
		if pages > 10 {
			t.Fatal("too many pages")
		}
	}
	if len(seqs) != n || seqs[0] != 1 || seqs[n-1] != n || !slices.IsSorted(seqs) {
		t.Fatalf("synced seqs %v", seqs)
	}

	// alice recalls message 5 while bob is offline; bob's Sync from his
	// last seq shows the notice, and the message syncs as recalled.
	m := e.ok(t, alice, http.StatusOK, "POST", "/api/v1/messages/"+ids[4]+"/recall", nil)
	if numTB(t, m["seq"]) != 5 || numTB(t, m["notice_seq"]) != n+1 {
		t.Fatalf("recall %v", m)
	}
	r := e.reply(t, bob, "b1", protocol.OpSync, map[string]any{"conversation_id": conv, "after_seq": after})
	page := list(t, r, "messages")
	if len(page) != 1 || numTB(t, page[0]["type"]) != store.TypeRecallNotice || numTB(t, page[0]["seq"]) != n+1 ||
		!strings.Contains(fmt.Sprint(page[0]["content"]), ids[4]) {
		t.Fatalf("sync after recall %v", r)
	}
	m = e.ok(t, bob, http.StatusOK, "GET", path("/api/v1/conversations/%s/messages?after_seq=4&limit=1", conv), nil)
	got := list(t, m, "messages")
	if len(got) != 1 || numTB(t, got[0]["status"]) != store.StatusRecalled || got[0]["content"] != nil || m["has_more"] != true {
		t.Fatalf("recalled message %v", m)
	}
	// Scrolling back: the page below seq 10.
	m = e.ok(t, bob, http.StatusOK, "GET", path("/api/v1/conversations/%s/messages?before_seq=10&limit=3", conv), nil)
	if s := idsOf(t, list(t, m, "messages"), "seq"); !slices.Equal(s, []int64{7, 8, 9}) || m["has_more"] != true {
		t.Fatalf("page before 10: %v %v", s, m["has_more"])
	}
	// Clamped limit.
	m = e.ok(t, bob, http.StatusOK, "GET", path("/api/v1/conversations/%s/messages?limit=100000", conv), nil)
	if len(list(t, m, "messages")) != 121 {
		t.Fatalf("limit not clamped to 200: %d", len(list(t, m, "messages")))
	}
	// The unread count does not count the notice nor the recalled message.
	m = e.ok(t, bob, http.StatusOK, "GET", "/api/v1/conversations", nil)
	if numTB(t, m["total_unread"]) != n-1 {
		t.Fatalf("bob's unread %v, want %d", m, n-1)
	}
}

// failingMessages fails AppendMessages.
type failingMessages struct {
	innerMessages
}

// innerMessages names the embedded store (its method Messages would
// clash with a field named Messages).
type innerMessages = store.Messages

func (failingMessages) AppendMessages(context.Context, []*store.Message) ([]store.AppendResult, error) {
	return nil, errors.New("disk on fire")
}

// TestSendRefusals: every refusal code of SendAck.
func TestSendRefusals(t *testing.T) {
	forEachMsgStore(t, testSendRefusals, func(c *Config) { c.SendBurst = 3; c.SendRate = 0.001; c.MaxContentBytes = 1024 })
}

func testSendRefusals(t *testing.T, e *env) {
	alice, bob, carol, dave := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol"), e.user(t, "dave")
	group := e.newGroup(t, alice, bob, carol)
	e.ok(t, bob, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", alice.id), nil)
	big := strings.Repeat("x", 2000)

	tests := []struct {
		name string
		as   tuser
		req  any
		code string
	}{
		{"blocked", alice, text("r1", bob.id, 0, "hi"), protocol.CodeBlocked},
		{"not member", dave, text("r2", 0, group, "hi"), protocol.CodeNotMember},
		{"no such group", dave, text("r3", 0, 999999, "hi"), protocol.CodeNotMember},
		{"no such user", dave, text("r4", 999999, 0, "hi"), protocol.CodeBadRequest},
		{"too large", dave, text("r5", carol.id, 0, big), protocol.CodeTooLarge},
		{"system type", dave, map[string]any{"client_msg_id": "r6", "to_user": carol.id, "type": 100, "content": map[string]any{"text": "x"}}, protocol.CodeBadRequest},
		{"type 0", dave, map[string]any{"client_msg_id": "r7", "to_user": carol.id, "type": 0, "content": map[string]any{"text": "x"}}, protocol.CodeBadRequest},
		{"type 7", dave, map[string]any{"client_msg_id": "r7", "to_user": carol.id, "type": 7, "content": map[string]any{}}, protocol.CodeBadRequest},
		{"no client_msg_id", dave, text("", carol.id, 0, "x"), protocol.CodeBadRequest},
		{"long client_msg_id", dave, text(strings.Repeat("i", 65), carol.id, 0, "x"), protocol.CodeBadRequest},
		{"both targets", dave, text("r8", carol.id, group, "x"), protocol.CodeBadRequest},
		{"no target", dave, text("r9", 0, 0, "x"), protocol.CodeBadRequest},
		{"to self", dave, text("r10", dave.id, 0, "x"), protocol.CodeBadRequest},
		{"empty text", dave, text("r11", carol.id, 0, ""), protocol.CodeBadRequest},
		{"content not object", dave, map[string]any{"client_msg_id": "r12", "to_user": carol.id, "type": 1, "content": "hi"}, protocol.CodeBadRequest},
		{"image without file", dave, map[string]any{"client_msg_id": "r13", "to_user": carol.id, "type": 2, "content": map[string]any{"width": 3}}, protocol.CodeBadRequest},
		{"voice without duration", dave, map[string]any{"client_msg_id": "r14", "to_user": carol.id, "type": 4, "content": map[string]any{"url": "u"}}, protocol.CodeBadRequest},
		{"text of wrong type", dave, map[string]any{"client_msg_id": "r15", "to_user": carol.id, "type": 1, "content": map[string]any{"text": 5}}, protocol.CodeBadRequest},
		{"not JSON", dave, "{nope", protocol.CodeBadRequest},
		{"not an object", dave, "[1]", protocol.CodeBadRequest},
		{"negative mention", dave, map[string]any{"client_msg_id": "r16", "group_id": group, "type": 1, "content": map[string]any{"text": "x"}, "mentions": []int{-1}}, protocol.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { e.sendRefused(t, tt.as, "k", tt.req, tt.code) })
	}
	// The refusals above cost no tokens but for the ones that passed the
	// shape checks (blocked, not member, no such group/user): dave still
	// has... use a fresh user for the rate limit.
	erin := e.user(t, "erin")
	for i := range 3 {
		e.sendOK(t, erin, "k", text(fmt.Sprint("rl", i), carol.id, 0, "x"))
	}
	e.sendRefused(t, erin, "k", text("rl3", carol.id, 0, "x"), protocol.CodeRateLimited)
	// HTTP status of a refusal.
	st, m := e.call(t, erin, "POST", "/api/v1/messages", text("rl4", carol.id, 0, "x"))
	wantErr(t, "rate limited over HTTP", st, m, http.StatusTooManyRequests, protocol.CodeRateLimited)
	st, m = e.call(t, alice, "POST", "/api/v1/messages", text("h1", bob.id, 0, "x"))
	wantErr(t, "blocked over HTTP", st, m, http.StatusForbidden, protocol.CodeBlocked)

	// Muted member, then mute_all for plain members (admins still speak).
	until := time.Now().Add(time.Hour).UnixMilli()
	e.ok(t, alice, http.StatusOK, "PATCH", path("/api/v1/groups/%d/members/%d", group, carol.id), map[string]any{"muted_until_ms": until})
	e.sendRefused(t, carol, "k", text("mu1", 0, group, "x"), protocol.CodeMuted)
	e.ok(t, alice, http.StatusOK, "PATCH", path("/api/v1/groups/%d", group), map[string]any{"mute_all": true})
	frank := e.user(t, "frank")
	e.ok(t, alice, http.StatusOK, "POST", path("/api/v1/groups/%d/members", group), map[string]any{"user_ids": []int64{frank.id}})
	e.sendRefused(t, frank, "k", text("mu2", 0, group, "x"), protocol.CodeMuted)
	e.sendOK(t, alice, "k", text("mu3", 0, group, "the owner speaks"))

	// A failing store: unavailable, never an ack.
	e.svc.commit.close()
	e.sendRefused(t, frank, "k", text("u1", carol.id, 0, "x"), protocol.CodeUnavailable)
}

// commitThenFail stores the first batch but reports a failure, as a
// connection lost at COMMIT would; later calls pass through.
type commitThenFail struct {
	innerMessages
	once sync.Once
}

func (c *commitThenFail) AppendMessages(ctx context.Context, msgs []*store.Message) ([]store.AppendResult, error) {
	res, err := c.innerMessages.AppendMessages(ctx, msgs)
	failed := false
	c.once.Do(func() { failed = true })
	if failed && err == nil {
		return nil, errors.New("connection lost at COMMIT (outcome unknown)")
	}
	return res, err
}

// TestCommitOutcomeUnknown: a batch stored by an attempt that reported a
// failure is found by the retry as a duplicate of itself; it is acked as
// stored and its event is published (not silently skipped).
func TestCommitOutcomeUnknown(t *testing.T) {
	e := newEnv(t, noRateLimit)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	b1 := e.online(t, bob, "b1", testComet)
	e.events(t)
	e.svc.msgs = &commitThenFail{innerMessages: e.svc.msgs} // before the committer starts
	ack := e.sendOK(t, alice, "a1", text("u1", bob.id, 0, "stored once"))
	if numTB(t, ack["seq"]) != 1 {
		t.Fatalf("ack %v", ack)
	}
	c := &collector{e: e}
	evs := c.waitFor(t, "the message event", func(evs []event) bool { return countType(evs, evMessage) >= 1 })
	if n := len(byKey(evs)[b1]); n != 1 {
		t.Fatalf("bob's device got %d message events, want 1", n)
	}
}

// TestRecallAfterMessageEvent: a recall made while the message's own event
// is still in fan-out is published after it, never before.
func TestRecallAfterMessageEvent(t *testing.T) {
	e := newEnv(t, noRateLimit)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	b1 := e.online(t, bob, "b1", testComet)
	e.events(t)
	hold := make(chan struct{})
	e.reg.mu.Lock()
	e.reg.hold = hold // the message's fan-out stalls in its session lookup
	e.reg.mu.Unlock()
	ack := e.sendOK(t, alice, "a1", text("r1", bob.id, 0, "oops"))
	// The recall is stored and answered while the message event waits.
	e.ok(t, alice, http.StatusOK, "POST", "/api/v1/messages/"+ack["msg_id"].(string)+"/recall", nil)
	close(hold)
	c := &collector{e: e}
	evs := c.waitFor(t, "message and recall events", func(evs []event) bool {
		return countType(evs, evMessage) >= 1 && countType(evs, evRecall) >= 1
	})
	var order []string
	for _, ev := range evs {
		if slices.Contains(ev.keys, b1) {
			order = append(order, fmt.Sprint(ev.body["type"]))
		}
	}
	if len(order) != 2 || order[0] != evMessage || order[1] != evRecall {
		t.Fatalf("bob's device got %v, want [message recall]", order)
	}
}

// TestSendStoreFailure: a failing AppendMessages answers unavailable.
func TestSendStoreFailure(t *testing.T) {
	e := newEnv(t, noRateLimit)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	e.svc.msgs = failingMessages{e.svc.msgs} // before the committer starts
	e.sendRefused(t, alice, "k", text("f1", bob.id, 0, "x"), protocol.CodeUnavailable)
	st, m := e.call(t, alice, "POST", "/api/v1/messages", text("f2", bob.id, 0, "x"))
	wantErr(t, "store failure over HTTP", st, m, http.StatusServiceUnavailable, protocol.CodeUnavailable)
}

// TestRequireFriendship: not_friends until they are friends.
func TestRequireFriendship(t *testing.T) {
	forEachMsgStore(t, func(t *testing.T, e *env) {
		alice, bob := e.user(t, "alice"), e.user(t, "bob")
		e.sendRefused(t, alice, "k", text("x1", bob.id, 0, "hi"), protocol.CodeNotFriends)
		e.befriend(t, alice, bob)
		e.sendOK(t, alice, "k", text("x2", bob.id, 0, "hi"))
	}, func(c *Config) { c.RequireFriendship = true })
}

// TestReadReceipts: Op 20 read moves the cursor forward only, lowers
// unread and sends read events to the peer and the reader's other
// devices; delivered acks; group read counts.
func TestReadReceipts(t *testing.T) {
	forEachMsgStore(t, testReadReceipts, noRateLimit)
}

func testReadReceipts(t *testing.T, e *env) {
	alice, bob, carol := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol")
	a1 := e.online(t, alice, "a1", testComet)
	b1, b2 := e.online(t, bob, "b1", testComet), e.online(t, bob, "b2", testComet)
	conv := store.PairConversationID(alice.id, bob.id)
	for i := range 3 {
		e.sendOK(t, alice, a1, text(fmt.Sprint("m", i), bob.id, 0, "x"))
	}
	c := &collector{e: e}
	c.waitFor(t, "message events", func(evs []event) bool { return countType(evs, evMessage) >= 6 })
	c.all = nil

	r := e.reply(t, bob, b1, protocol.OpAck, map[string]any{"conversation_id": conv, "seq": 2, "kind": "read"})
	if fmt.Sprint(r["code"]) != "0" || numTB(t, r["read_seq"]) != 2 || numTB(t, r["unread"]) != 1 {
		t.Fatalf("read ack %v", r)
	}
	evs := c.waitFor(t, "read events", func(evs []event) bool { return countType(evs, evRead) >= 2 })
	got := byKey(evs)
	for _, k := range []string{a1, b2} {
		wantEvent(t, got, k, evRead, map[string]any{"conversation_id": conv, "user_id": bob.id, "seq": 2})
	}
	if len(got[b1]) != 0 {
		t.Fatalf("the reading connection got %v", got[b1])
	}
	// Backwards: no change, no event.
	r = e.reply(t, bob, b1, protocol.OpAck, map[string]any{"conversation_id": conv, "seq": 1, "kind": "read"})
	if numTB(t, r["read_seq"]) != 2 {
		t.Fatalf("cursor moved back: %v", r)
	}
	r = e.reply(t, bob, b1, protocol.OpAck, map[string]any{"conversation_id": conv, "seq": 3, "kind": "delivered"})
	if fmt.Sprint(r["code"]) != "0" {
		t.Fatalf("delivered ack %v", r)
	}
	for _, tt := range []struct {
		as   tuser
		body any
		code string
	}{
		{carol, map[string]any{"conversation_id": conv, "seq": 1, "kind": "read"}, protocol.CodeForbidden},
		{bob, map[string]any{"conversation_id": conv, "seq": 1, "kind": "seen"}, protocol.CodeBadRequest},
		{bob, map[string]any{"conversation_id": "x_1", "seq": 1, "kind": "read"}, protocol.CodeBadRequest},
		{bob, map[string]any{"conversation_id": conv, "seq": -1, "kind": "read"}, protocol.CodeBadRequest},
		{bob, map[string]any{"conversation_id": store.PairConversationID(bob.id, carol.id), "seq": 1, "kind": "read"}, protocol.CodeNotFound},
	} {
		if r := e.reply(t, tt.as, "k", protocol.OpAck, tt.body); r["code"] != tt.code {
			t.Fatalf("ack %v as %s: %v, want %s", tt.body, tt.as.name, r, tt.code)
		}
	}
	// HTTP read.
	m := e.ok(t, bob, http.StatusOK, "POST", path("/api/v1/conversations/%s/read", conv), map[string]any{"seq": 3})
	if numTB(t, m["unread"]) != 0 || numTB(t, m["read_seq"]) != 3 {
		t.Fatalf("HTTP read %v", m)
	}

	// Group read counts.
	group := e.newGroup(t, alice, bob, carol)
	gconv := store.GroupConversationID(group)
	e.sendOK(t, alice, a1, text("g1", 0, group, "x"))
	e.ok(t, bob, http.StatusOK, "POST", path("/api/v1/conversations/%s/read", gconv), map[string]any{"seq": 1})
	m = e.ok(t, alice, http.StatusOK, "GET", path("/api/v1/conversations/%s/messages/1/reads", gconv), nil)
	if numTB(t, m["read_count"]) != 1 {
		t.Fatalf("read count %v", m)
	}
	e.refused(t, e.user(t, "dave"), http.StatusForbidden, protocol.CodeNotMember, "GET", path("/api/v1/conversations/%s/messages/1/reads", gconv), nil)

	// Muting a conversation removes it from the total.
	m = e.ok(t, bob, http.StatusOK, "GET", "/api/v1/conversations", nil)
	before := numTB(t, m["total_unread"])
	e.ok(t, bob, http.StatusOK, "PUT", path("/api/v1/conversations/%s/mute", conv), map[string]any{"muted": true})
	e.sendOK(t, alice, a1, text("m9", bob.id, 0, "x"))
	m = e.ok(t, bob, http.StatusOK, "GET", "/api/v1/conversations", nil)
	if numTB(t, m["total_unread"]) != before {
		t.Fatalf("total unread %v after muting, want %d", m["total_unread"], before)
	}
}

// TestRecall: who may recall, the event, conflicts.
func TestRecall(t *testing.T) {
	forEachMsgStore(t, testRecall, noRateLimit)
}

func testRecall(t *testing.T, e *env) {
	alice, bob, carol := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol")
	group := e.newGroup(t, alice, bob, carol)
	b1 := e.online(t, bob, "b1", testComet)
	c1 := e.online(t, carol, "c1", testComet)
	ack := e.sendOK(t, bob, b1, text("g1", 0, group, "oops"))
	id := ack["msg_id"].(string)
	recall := "/api/v1/messages/" + id + "/recall"

	e.refused(t, carol, http.StatusForbidden, protocol.CodeForbidden, "POST", recall, nil)
	e.refused(t, e.user(t, "dave"), http.StatusForbidden, protocol.CodeNotMember, "POST", recall, nil)
	e.refused(t, carol, http.StatusNotFound, protocol.CodeNotFound, "POST", "/api/v1/messages/123/recall", nil)
	// Past the window the sender may not; the owner (admin) may.
	e.svc.now = func() time.Time { return time.Now().Add(time.Hour) }
	e.refused(t, bob, http.StatusForbidden, protocol.CodeForbidden, "POST", recall, nil)
	c := &collector{e: e}
	c.waitFor(t, "message events", func(evs []event) bool { return countType(evs, evMessage) >= 1 })
	c.all = nil
	m := e.ok(t, alice, http.StatusOK, "POST", recall, nil)
	if m["msg_id"] != id || numTB(t, m["seq"]) != 1 || numTB(t, m["notice_seq"]) != 2 {
		t.Fatalf("recall %v", m)
	}
	evs := c.waitFor(t, "recall events", func(evs []event) bool { return countType(evs, evRecall) >= 2 })
	for _, k := range []string{b1, c1} {
		wantEvent(t, byKey(evs), k, evRecall, map[string]any{"msg_id": id, "seq": 1, "notice_seq": 2, "conversation_id": store.GroupConversationID(group)})
	}
	e.refused(t, alice, http.StatusConflict, protocol.CodeConflict, "POST", recall, nil)
	e.svc.now = time.Now
	// A pair message: the other user may not recall it.
	ack = e.sendOK(t, alice, "a", text("p1", bob.id, 0, "x"))
	e.refused(t, bob, http.StatusForbidden, protocol.CodeForbidden, "POST", "/api/v1/messages/"+ack["msg_id"].(string)+"/recall", nil)
	e.refused(t, carol, http.StatusNotFound, protocol.CodeNotFound, "POST", "/api/v1/messages/"+ack["msg_id"].(string)+"/recall", nil)
	e.ok(t, alice, http.StatusOK, "POST", "/api/v1/messages/"+ack["msg_id"].(string)+"/recall", nil)
}

// TestTyping: a typing event to the other participants only, rate
// limited, never stored, no reply.
func TestTyping(t *testing.T) {
	forEachMsgStore(t, testTyping)
}

func testTyping(t *testing.T, e *env) {
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	a1, a2 := e.online(t, alice, "a1", testComet), e.online(t, alice, "a2", testComet)
	b1 := e.online(t, bob, "b1", testComet)
	e.events(t)
	conv := store.PairConversationID(alice.id, bob.id)
	for range 3 {
		if p := e.receive(t, alice, a1, protocol.OpTyping, map[string]any{"conversation_id": conv}); p != nil {
			t.Fatalf("typing answered %v", p)
		}
	}
	// Malformed and foreign typing packets are dropped silently too.
	carol := e.user(t, "carol")
	for _, body := range []string{"nope", `{"conversation_id":"zz"}`} {
		if p := e.receive(t, alice, a1, protocol.OpTyping, body); p != nil {
			t.Fatalf("typing %s answered %v", body, p)
		}
	}
	if p := e.receive(t, carol, "c", protocol.OpTyping, map[string]any{"conversation_id": conv}); p != nil {
		t.Fatal("typing answered")
	}
	// A message sent afterwards proves the order: typing events came first.
	e.sendOK(t, alice, a1, text("t1", bob.id, 0, "x"))
	c := &collector{e: e}
	evs := c.waitFor(t, "message event", func(evs []event) bool { return countType(evs, evMessage) >= 2 })
	got := byKey(evs)
	wantEvent(t, got, b1, evTyping, map[string]any{"conversation_id": conv, "user_id": alice.id})
	if countType(evs, evTyping) != 1 || len(got[a2]) != 1 {
		t.Fatalf("typing events %v", got)
	}
	if c, err := e.svc.msgs.Conversation(context.Background(), conv); err != nil || c.MaxSeq != 1 {
		t.Fatalf("typing stored something: %+v %v", c, err)
	}
	// A blocked user's typing does not reach the blocker.
	e.ok(t, bob, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", alice.id), nil)
	e.svc.now = func() time.Time { return time.Now().Add(time.Minute) } // past the typing interval
	defer func() { e.svc.now = time.Now }()
	e.receive(t, alice, a1, protocol.OpTyping, map[string]any{"conversation_id": conv})
	e.receive(t, bob, b1, protocol.OpTyping, map[string]any{"conversation_id": conv})
	c.all = nil
	evs = c.waitFor(t, "bob's typing", func(evs []event) bool { return countType(evs, evTyping) >= 2 })
	got = byKey(evs)
	if len(got[b1]) != 0 || len(got[a1]) != 1 || len(got[a2]) != 1 {
		t.Fatalf("typing after a block: %v", got)
	}
}

// TestGroupMemberChangesReachFanout: the cached member list follows
// joins and kicks at once (new members get the next message, removed ones
// do not), and read diffusion above the threshold leaves no index entry.
func TestGroupMemberChangesReachFanout(t *testing.T) {
	forEachMsgStore(t, testGroupMemberChanges, noRateLimit, func(c *Config) { c.LargeGroupThreshold = 1 })
}

func testGroupMemberChanges(t *testing.T, e *env) {
	alice, bob, carol := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol")
	group := e.newGroup(t, alice, bob)
	b1, c1 := e.online(t, bob, "b1", testComet), e.online(t, carol, "c1", testComet)
	e.sendOK(t, alice, "a", text("m1", 0, group, "one"))
	e.ok(t, alice, http.StatusOK, "POST", path("/api/v1/groups/%d/members", group), map[string]any{"user_ids": []int64{carol.id}})
	e.sendOK(t, alice, "a", text("m2", 0, group, "two"))
	e.ok(t, alice, http.StatusNoContent, "DELETE", path("/api/v1/groups/%d/members/%d", group, bob.id), nil)
	e.sendOK(t, alice, "a", text("m3", 0, group, "three"))
	c := &collector{e: e}
	evs := c.waitFor(t, "message events", func(evs []event) bool { return countType(evs, evMessage) >= 4 })
	seqsOf := func(key string) []int64 {
		var s []int64
		for _, b := range byKey(evs)[key] {
			if b["type"] == evMessage {
				s = append(s, numTB(t, msgOf(t, b)["seq"]))
			}
		}
		return s
	}
	if got := seqsOf(b1); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("bob (kicked before 3) got seqs %v", got)
	}
	if got := seqsOf(c1); !slices.Equal(got, []int64{2, 3}) {
		t.Fatalf("carol (joined before 2) got seqs %v", got)
	}
	// Every group is above threshold 1: read diffusion; carol's list still
	// has the group (an entry that read nothing) and counts it.
	m := e.ok(t, carol, http.StatusOK, "GET", "/api/v1/conversations", nil)
	if cs := list(t, m, "conversations"); len(cs) != 1 || numTB(t, cs[0]["unread"]) != 3 || numTB(t, m["total_unread"]) != 3 {
		t.Fatalf("carol's list before reading: %v", m)
	}
	r := e.ok(t, carol, http.StatusOK, "POST", path("/api/v1/conversations/%s/read", store.GroupConversationID(group)), map[string]any{"seq": 1})
	if numTB(t, r["unread"]) != 2 {
		t.Fatalf("carol's read state %v", r)
	}
}

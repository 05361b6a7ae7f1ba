package standalone

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/client"
	"github.com/goimdev/goim/protocol"
)

// nextMessageEvent returns the next Op 22 event of c of type typ, skipping
// other events.
func nextMessageEvent(t *testing.T, c *client.Client, typ string) client.Event {
	t.Helper()
	for {
		p := next(t, c)
		if p.Op != protocol.OpEvent {
			continue
		}
		ev, err := client.ParseEvent(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == typ {
			return ev
		}
	}
}

// waitMessage skips c's events until the message event of msgID.
func waitMessage(t *testing.T, c *client.Client, msgID string) *client.Message {
	t.Helper()
	for {
		if ev := nextMessageEvent(t, c, client.EventMessage); ev.Message != nil && ev.Message.MsgID == msgID {
			return ev.Message
		}
	}
}

func textReq(cmid string, to, group int64, text string) client.SendReq {
	return client.SendReq{ClientMsgID: cmid, ToUser: to, GroupID: group, Type: client.TypeText, Content: json.RawMessage(fmt.Sprintf(`{"text":%q}`, text))}
}

// TestMessagingEndToEnd: SDK clients over TCP and WebSocket send, get
// their SendAck, the receiver's and the sender's other device's events,
// sync after being offline, read receipts and recall.
func TestMessagingEndToEnd(t *testing.T) {
	forEachStore(t, testMessagingEndToEnd)
}

func testMessagingEndToEnd(t *testing.T, s *Server) {
	ctx := testCtx(t)
	alice, bob := newUser(t, s, "malice"), newUser(t, s, "mbob")
	aTCP := dial(t, s, "tcp", alice, client.Config{Platform: "pc"})
	aWS := dial(t, s, "ws", alice, client.Config{Platform: "web"})
	b := dial(t, s, "ws", bob, client.Config{Platform: "ios"})

	ack, err := aTCP.SendMessage(ctx, textReq("e2e-1", bob.id, 0, "hello bob"))
	if err != nil {
		t.Fatal(err)
	}
	conv := fmt.Sprintf("p_%d_%d", min(alice.id, bob.id), max(alice.id, bob.id))
	if ack.Seq != 1 || ack.ConversationID != conv || ack.MsgID == "" || ack.ClientMsgID != "e2e-1" {
		t.Fatalf("ack %+v", ack)
	}
	for _, c := range []*client.Client{b, aWS} {
		ev := nextMessageEvent(t, c, client.EventMessage)
		if m := ev.Message; m == nil || m.MsgID != ack.MsgID || m.Seq != 1 || m.SenderID != alice.id || string(m.Content) != `{"text":"hello bob"}` {
			t.Fatalf("message event %+v", ev)
		}
	}
	// A retry is the same message.
	if again, err := aTCP.SendMessage(ctx, textReq("e2e-1", bob.id, 0, "hello bob")); err != nil || again != ack {
		t.Fatalf("retry: %+v %v, want %+v", again, err, ack)
	}
	// Pipelined sends on one connection keep their order.
	acks := make(chan client.SendAck, 10)
	errs := make(chan error, 10)
	for i := range 10 {
		go func() {
			a, err := b.SendMessage(ctx, textReq(fmt.Sprint("p", i), alice.id, 0, fmt.Sprint("n", i)))
			errs <- err
			acks <- a
		}()
	}
	seen := map[int64]bool{}
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		seen[(<-acks).Seq] = true
	}
	for seq := int64(2); seq <= 11; seq++ {
		if !seen[seq] {
			t.Fatalf("seqs %v, want 2..11", seen)
		}
	}
	// Refusals arrive as typed codes.
	if _, err := b.SendMessage(ctx, client.SendReq{ClientMsgID: "bad", ToUser: alice.id, Type: 100, Content: json.RawMessage(`{}`)}); client.ErrorCode(err) != protocol.CodeBadRequest {
		t.Fatalf("system type: %v", err)
	}

	// alice's WebSocket device goes offline; bob writes; it syncs.
	_ = aWS.Close()
	for i := range 5 {
		if _, err := b.SendMessage(ctx, textReq(fmt.Sprint("off", i), alice.id, 0, "while away")); err != nil {
			t.Fatal(err)
		}
	}
	aWS2 := dial(t, s, "ws", alice, client.Config{Platform: "web"})
	resp, err := aWS2.Sync(ctx, client.SyncReq{ConversationID: conv, AfterSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Messages) != 15 || resp.HasMore || resp.Messages[0].Seq != 2 || resp.Messages[14].Seq != 16 {
		t.Fatalf("sync: %d messages, has_more %v", len(resp.Messages), resp.HasMore)
	}
	list, err := aWS2.Sync(ctx, client.SyncReq{Conversations: true})
	if err != nil || len(list.Conversations) != 1 || list.Conversations[0].Unread != 15 || list.Conversations[0].MaxSeq != 16 {
		t.Fatalf("conversations %+v %v", list, err)
	}
	if s.cfg.Cache.Driver == "redis" {
		// Redis loses the unread counters: they come back from the store.
		flushPrefix(t, s.cfg.Cache.RedisAddr, s.cfg.Cache.Unread.Prefix)
		list, err := aWS2.Sync(ctx, client.SyncReq{Conversations: true})
		if err != nil || len(list.Conversations) != 1 || list.Conversations[0].Unread != 15 {
			t.Fatalf("conversations after losing the unread counters %+v %v", list, err)
		}
	}

	// Read receipt: bob's device learns alice read up to 16.
	if err := aWS2.Ack(ctx, client.AckReq{ConversationID: conv, Seq: 16, Kind: client.AckRead}); err != nil {
		t.Fatal(err)
	}
	if ev := nextMessageEvent(t, b, client.EventRead); ev.UserID != alice.id || ev.Seq != 16 || ev.ConversationID != conv {
		t.Fatalf("read event %+v", ev)
	}
	// Typing reaches bob, no reply for alice.
	if err := aWS2.Typing(ctx, conv); err != nil {
		t.Fatal(err)
	}
	if ev := nextMessageEvent(t, b, client.EventTyping); ev.UserID != alice.id {
		t.Fatalf("typing event %+v", ev)
	}
	// Recall over HTTP: bob's device gets the event; Sync shows it.
	var rec struct {
		NoticeSeq int64 `json:"notice_seq"`
	}
	if err := s.api().WithToken(alice.token).Do(ctx, http.MethodPost, "/api/v1/messages/"+ack.MsgID+"/recall", nil, &rec); err != nil {
		t.Fatal(err)
	}
	if ev := nextMessageEvent(t, b, client.EventRecall); ev.MsgID != ack.MsgID || ev.Seq != 1 || ev.NoticeSeq != 17 || rec.NoticeSeq != 17 {
		t.Fatalf("recall event %+v (answer %+v)", ev, rec)
	}
	resp, err = b.Sync(ctx, client.SyncReq{ConversationID: conv, AfterSeq: 0, Limit: 1})
	if err != nil || len(resp.Messages) != 1 || resp.Messages[0].Status != client.StatusRecalled || len(resp.Messages[0].Content) != 0 || !resp.HasMore {
		t.Fatalf("recalled message after sync: %+v %v", resp, err)
	}

	// A group: carol's message reaches alice's devices and bob, not the
	// sending connection; the group conversation syncs.
	carol := newUser(t, s, "mcarol")
	c := dial(t, s, "tcp", carol, client.Config{Platform: "android"})
	var g struct {
		GroupID int64 `json:"group_id"`
	}
	if err := s.api().WithToken(alice.token).Do(ctx, http.MethodPost, "/api/v1/groups", map[string]any{"name": "trio", "members": []int64{bob.id, carol.id}}, &g); err != nil {
		t.Fatal(err)
	}
	gack, err := c.SendMessage(ctx, textReq("g-1", 0, g.GroupID, "hello all"))
	if err != nil || gack.Seq != 1 || gack.ConversationID != fmt.Sprintf("g_%d", g.GroupID) {
		t.Fatalf("group send %+v %v", gack, err)
	}
	for _, cl := range []*client.Client{aTCP, aWS2, b} {
		if m := waitMessage(t, cl, gack.MsgID); m.GroupID != g.GroupID || m.Seq != 1 || m.SenderID != carol.id {
			t.Fatalf("group message event %+v", m)
		}
	}
	if _, err := c.SendMessage(ctx, textReq("g-2", 0, g.GroupID+1000, "nope")); client.ErrorCode(err) != protocol.CodeNotMember {
		t.Fatalf("unknown group: %v", err)
	}
	// carol's connection got only SendAcks: her next event is bob's message.
	if _, err := b.SendMessage(ctx, textReq("g-3", 0, g.GroupID, "from bob")); err != nil {
		t.Fatal(err)
	}
	if ev := nextMessageEvent(t, c, client.EventMessage); ev.Message.ClientMsgID != "g-3" {
		t.Fatalf("carol's first event %+v, want bob's message", ev.Message)
	}
}

// TestPipelinedSendsKeepOrder writes 30 Op 4 packets in one TCP write
// without waiting: their SendAcks come back in order with consecutive
// seqs in the order sent.
func TestPipelinedSendsKeepOrder(t *testing.T) {
	forEachStore(t, testPipelinedSendsKeepOrder)
}

func testPipelinedSendsKeepOrder(t *testing.T, s *Server) {
	alice, bob := newUser(t, s, "palice"), newUser(t, s, "pbob")
	c := rawDial(t, s, "tcp", "")
	c.auth(alice.token, "")
	const n = 30
	var stream []byte
	for i := range n {
		body, _ := json.Marshal(textReq(fmt.Sprint("pipe-", i), bob.id, 0, fmt.Sprint("message ", i)))
		stream = append(stream, frame(protocol.OpSendMsg, int32(100+i), body)...)
	}
	c.write(stream)
	var got []int64
	for len(got) < n {
		pkts, ok := c.readMessage()
		if !ok {
			t.Fatal("connection closed")
		}
		for _, p := range pkts {
			if p.op != protocol.OpSendMsgReply {
				continue
			}
			var ack struct {
				Code        any    `json:"code"`
				Seq         int64  `json:"seq"`
				ClientMsgID string `json:"client_msg_id"`
			}
			if err := json.Unmarshal(p.body, &ack); err != nil || fmt.Sprint(ack.Code) != "0" {
				t.Fatalf("ack %s: %v", p.body, err)
			}
			i := len(got)
			if p.seq != int32(100+i) || ack.ClientMsgID != fmt.Sprint("pipe-", i) || ack.Seq != int64(i+1) {
				t.Fatalf("reply %d: packet seq %d, ack %+v; want packet seq %d, seq %d", i, p.seq, ack, 100+i, i+1)
			}
			got = append(got, ack.Seq)
		}
	}
}

// flushPrefix deletes the Redis keys under prefix.
func flushPrefix(t *testing.T, addr, prefix string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := testCtx(t)
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

package logic

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// busRecords returns the recorded bus messages of topic.
func (b *recBus) busRecords(topic string) []bus.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []bus.Message
	for _, m := range b.msgs {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// TestPersistOnBus: in bus mode (goim logic) an Op 4 is answered by nothing,
// the message goes to bus.TopicMsg keyed by its conversation, and the
// persister (what a job runs) stores it, publishes the receiver's event and
// pushes the SendAck (Op 5, the request's Seq) to the sending connection. A
// redelivered batch stores nothing twice and acks with the original seq.
// Over HTTP the send waits for the store.
func TestPersistOnBus(t *testing.T) {
	e := newEnv(t, noRateLimit, func(c *Config) { c.PersistOnBus = true })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.bus.Memory.Subscribe(ctx, bus.TopicMsg, "persist", e.svc.PersistHandler()); err != nil {
		t.Fatal(err)
	}
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	a1 := e.online(t, alice, "a1", testComet)
	b1 := e.online(t, bob, "b1", testComet)

	if p := e.receive(t, alice, a1, protocol.OpSendMsg, text("bus-1", bob.id, 0, "hello")); p != nil {
		t.Fatalf("Op 4 in bus mode answered at once: op %d %s", p.Op, p.Body)
	}
	recs := e.bus.busRecords(bus.TopicMsg)
	if len(recs) != 1 || recs[0].Key != store.PairConversationID(alice.id, bob.id) {
		t.Fatalf("records on %s: %+v", bus.TopicMsg, recs)
	}
	ack := waitAck(t, e, a1, 1)
	if ack["client_msg_id"] != "bus-1" {
		t.Fatalf("ack %v", ack)
	}
	waitPush(t, e, func(m pushmsg.Msg) bool {
		return m.Operation == protocol.OpEvent && len(m.Keys) == 1 && m.Keys[0] == b1
	})

	// A job crash redelivers the batch: nothing is stored twice, the ack
	// is the original's.
	if err := e.svc.PersistHandler()(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if again := waitAck(t, e, a1, 1); again["msg_id"] != ack["msg_id"] {
		t.Fatalf("redelivered ack %v, want %v", again, ack)
	}

	// HTTP waits until the job stored it.
	status, body := e.do(t, "POST", "/api/v1/messages", text("bus-2", bob.id, 0, "over http"), bearer(alice.tok)...)
	if status != http.StatusOK || numTB(t, body["seq"]) != 2 {
		t.Fatalf("HTTP send in bus mode: %d %v", status, body)
	}
	msgs, _, err := e.svc.msgs.Messages(ctx, store.PairConversationID(alice.id, bob.id), 0, 0, 10)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("stored %d messages (%v), want 2", len(msgs), err)
	}
}

// waitAck waits for the SendAck with seq pushed to connection key and
// returns its body.
func waitAck(t *testing.T, e *env, key string, seq int64) map[string]any {
	t.Helper()
	m := waitPush(t, e, func(m pushmsg.Msg) bool {
		return m.Operation == protocol.OpSendMsgReply && m.Seq == 77 && len(m.Keys) == 1 && m.Keys[0] == key && m.Server == testComet
	})
	body := decodeObj(t, m.Body)
	if numTB(t, body["seq"]) != seq {
		t.Fatalf("ack %v, want seq %d", body, seq)
	}
	return body
}

// waitPush waits for a push published on bus.TopicPush that matches and
// removes it from the record.
func waitPush(t *testing.T, e *env, match func(pushmsg.Msg) bool) pushmsg.Msg {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.bus.mu.Lock()
		for i, bm := range e.bus.msgs {
			if bm.Topic != bus.TopicPush {
				continue
			}
			var m pushmsg.Msg
			if err := m.Unmarshal(bm.Value); err == nil && match(m) {
				e.bus.msgs = append(e.bus.msgs[:i:i], e.bus.msgs[i+1:]...)
				e.bus.mu.Unlock()
				return m
			}
		}
		e.bus.mu.Unlock()
		if time.Now().After(deadline) {
			e.bus.mu.Lock()
			for _, bm := range e.bus.msgs {
				var m pushmsg.Msg
				_ = m.Unmarshal(bm.Value)
				t.Logf("recorded: topic %s key %s op %d seq %d server %s keys %v", bm.Topic, bm.Key, m.Operation, m.Seq, m.Server, m.Keys)
			}
			e.bus.mu.Unlock()
			t.Fatal("timed out waiting for a push")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

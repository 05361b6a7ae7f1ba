package logic

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/protocol"
)

// asyncConn is a connection's comet.AsyncReplies: it records the replies.
type asyncConn struct {
	mu      sync.Mutex
	later   int
	replies []protocol.Packet
}

func (a *asyncConn) Later() {
	a.mu.Lock()
	a.later++
	a.mu.Unlock()
}

func (a *asyncConn) Reply(p protocol.Packet) {
	a.mu.Lock()
	a.replies = append(a.replies, p)
	a.mu.Unlock()
}

func (a *asyncConn) got() (int, []protocol.Packet) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.later, append([]protocol.Packet(nil), a.replies...)
}

// sendAsync runs an Op 4 through Receive with Replies set, as the
// in-process comet does, and returns Receive's own reply (nil when the
// SendAck comes through Replies).
func (e *env) sendAsync(t testing.TB, u tuser, key string, conn *asyncConn, seq int32, body any) *protocol.Packet {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p *protocol.Packet
	p, err = e.svc.Receive(ctx, &comet.ReceiveRequest{Server: testComet, UserID: u.id, Key: key, Replies: conn,
		Packet: protocol.Packet{Ver: 1, Op: protocol.OpSendMsg, Seq: seq, Body: b}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSendAsync: an Op 4 from an in-process comet returns at once and gets
// its SendAck through Replies once committed; one connection's pipelined
// sends are stored and answered in order; a refusal found before the
// commit is returned by Receive; a retry gets the original's ack.
func TestSendAsync(t *testing.T) {
	forEachMsgStore(t, func(t *testing.T, e *env) {
		alice, bob := e.user(t, "alice"), e.user(t, "bob")
		a1 := e.online(t, alice, "a1", testComet)
		b1 := e.online(t, bob, "b1", testComet)
		e.events(t)
		conn := &asyncConn{}
		const n = 50
		for i := range n {
			if p := e.sendAsync(t, alice, a1, conn, int32(100+i), text(fmt.Sprint("p-", i), bob.id, 0, "hi")); p != nil {
				t.Fatalf("send %d answered by Receive: %s", i, p.Body)
			}
		}
		// Refused before the commit: answered by Receive.
		p := e.sendAsync(t, alice, a1, conn, 200, text("", bob.id, 0, "no id"))
		if p == nil || p.Op != protocol.OpSendMsgReply || p.Seq != 200 || decodeObj(t, p.Body)["code"] != protocol.CodeBadRequest {
			t.Fatalf("refusal %+v", p)
		}
		// A retry of the first message: its original ack, through Replies.
		if p := e.sendAsync(t, alice, a1, conn, 201, text("p-0", bob.id, 0, "hi")); p != nil {
			t.Fatalf("retry answered by Receive: %s", p.Body)
		}
		var replies []protocol.Packet
		deadline := time.Now().Add(10 * time.Second)
		for {
			var later int
			later, replies = conn.got()
			if later != n+1 {
				t.Fatalf("Later called %d times, want %d", later, n+1)
			}
			if len(replies) == n+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d SendAcks", len(replies), n+1)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for i, p := range replies {
			ack := decodeObj(t, p.Body)
			wantSeq, wantCmid, wantPacket := int64(i+1), fmt.Sprint("p-", i), int32(100+i)
			if i == n {
				wantSeq, wantCmid, wantPacket = 1, "p-0", 201
			}
			if p.Op != protocol.OpSendMsgReply || p.Ver != 1 || p.Seq != wantPacket || fmt.Sprint(ack["code"]) != "0" ||
				numTB(t, ack["seq"]) != wantSeq || ack["client_msg_id"] != wantCmid {
				t.Fatalf("reply %d: op %d ver %d seq %d %v", i, p.Op, p.Ver, p.Seq, ack)
			}
		}
		c := &collector{e: e}
		evs := c.waitFor(t, "message events", func(evs []event) bool { return countType(evs, evMessage) >= n })
		if got := len(byKey(evs)[b1]); got != n {
			t.Fatalf("bob's device got %d events, want %d", got, n)
		}
	}, noRateLimit)
}

// TestSendAsyncStoreFailure: a failed commit answers each asynchronous
// send with unavailable, through Replies.
func TestSendAsyncStoreFailure(t *testing.T) {
	e := newEnv(t, noRateLimit)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	e.svc.msgs = failingMessages{e.svc.msgs} // before the committer starts
	conn := &asyncConn{}
	if p := e.sendAsync(t, alice, "k", conn, 9, text("f1", bob.id, 0, "x")); p != nil {
		t.Fatalf("answered by Receive: %s", p.Body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		later, replies := conn.got()
		if len(replies) == 1 {
			if later != 1 || replies[0].Seq != 9 || decodeObj(t, replies[0].Body)["code"] != protocol.CodeUnavailable {
				t.Fatalf("later %d reply %+v %s", later, replies[0], replies[0].Body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no SendAck")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package logic

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// commitThenTimeout stores the first batch but reports the commit timed
// out (the outcome is unknown to the committer, which does not retry a
// timeout); later calls pass through.
type commitThenTimeout struct {
	innerMessages
	once sync.Once
}

func (c *commitThenTimeout) AppendMessages(ctx context.Context, msgs []*store.Message) ([]store.AppendResult, error) {
	res, err := c.innerMessages.AppendMessages(ctx, msgs)
	failed := false
	c.once.Do(func() { failed = true })
	if failed && err == nil {
		return nil, fmt.Errorf("commit: %w", context.DeadlineExceeded)
	}
	return res, err
}

// messageSeqs returns the seqs of the message events key got, in order.
func messageSeqs(t *testing.T, evs []event, key string) []int64 {
	t.Helper()
	var seqs []int64
	for _, b := range byKey(evs)[key] {
		if b["type"] == evMessage {
			seqs = append(seqs, numTB(t, msgOf(t, b)["seq"]))
		}
	}
	return seqs
}

// TestTimedOutCommitPublishedByRetry: a commit answered unavailable
// (timeout) that the store kept anyway has its message event published
// once, by the client's retry, which gets the original SendAck; a second
// retry publishes nothing more.
func TestTimedOutCommitPublishedByRetry(t *testing.T) {
	for _, limited := range []bool{false, true} {
		t.Run(fmt.Sprintf("retry refused by the rate limit %v", limited), func(t *testing.T) {
			mut := noRateLimit
			if limited { // the retry goes through the refusal path (retryOr)
				mut = func(c *Config) { c.SendRate, c.SendBurst = 0.001, 1 }
			}
			e := newEnv(t, mut)
			alice, bob := e.user(t, "alice"), e.user(t, "bob")
			b1 := e.online(t, bob, "b1", testComet)
			e.events(t)
			e.svc.msgs = &commitThenTimeout{innerMessages: e.svc.msgs} // before the committer starts
			e.sendRefused(t, alice, "a1", text("t1", bob.id, 0, "kept by the store"), protocol.CodeUnavailable)
			for range 2 {
				if ack := e.sendOK(t, alice, "a1", text("t1", bob.id, 0, "kept by the store")); numTB(t, ack["seq"]) != 1 {
					t.Fatalf("retry ack %v, want seq 1", ack)
				}
			}
			// A later message: its event comes after any event of the retries.
			e.svc.sendLimit = nil
			e.sendOK(t, alice, "a1", text("t2", bob.id, 0, "next"))
			c := &collector{e: e}
			evs := c.waitFor(t, "the next message's event", func(evs []event) bool {
				return slices.Contains(messageSeqs(t, evs, b1), 2)
			})
			if got := messageSeqs(t, evs, b1); !slices.Equal(got, []int64{1, 2}) {
				t.Fatalf("bob's device got message events with seqs %v, want [1 2]", got)
			}
		})
	}
}

// TestReadAfterMessageEvent: a read receipt made while the message's own
// event is still in fan-out is published after it, never before.
func TestReadAfterMessageEvent(t *testing.T) {
	e := newEnv(t, noRateLimit)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	b1, b2 := e.online(t, bob, "b1", testComet), e.online(t, bob, "b2", testComet)
	e.events(t)
	hold := make(chan struct{})
	e.reg.mu.Lock()
	e.reg.hold = hold // the message's fan-out stalls in its session lookup
	e.reg.mu.Unlock()
	ack := e.sendOK(t, alice, "a1", text("r1", bob.id, 0, "read me"))
	conv := ack["conversation_id"].(string)
	// bob's first device reads it (it learnt the seq by Sync) while the
	// message event waits.
	r := e.reply(t, bob, b1, protocol.OpAck, map[string]any{"conversation_id": conv, "seq": 1, "kind": "read"})
	if fmt.Sprint(r["code"]) != "0" || numTB(t, r["read_seq"]) != 1 {
		t.Fatalf("read ack %v", r)
	}
	close(hold)
	c := &collector{e: e}
	evs := c.waitFor(t, "message and read events", func(evs []event) bool {
		return countType(evs, evMessage) >= 2 && countType(evs, evRead) >= 1
	})
	var order []string
	for _, ev := range evs {
		if slices.Contains(ev.keys, b2) {
			order = append(order, fmt.Sprint(ev.body["type"]))
		}
	}
	if len(order) != 2 || order[0] != evMessage || order[1] != evRead {
		t.Fatalf("bob's other device got %v, want [message read]", order)
	}
}

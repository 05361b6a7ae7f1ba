package comet

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/protocol"
)

// asyncLogic answers an Op 4 whose body is "later" through
// ReceiveRequest.Replies (the reply is held until release), and any other
// Op 4 or an Op 18 at once. It records the Seqs of the packets it got.
type asyncLogic struct {
	fakeLogic
	mu   sync.Mutex
	got  []int32
	held []heldReply
}

type heldReply struct {
	r   AsyncReplies
	ver int16
	seq int32
}

func (a *asyncLogic) Receive(ctx context.Context, req *ReceiveRequest) (*protocol.Packet, error) {
	a.mu.Lock()
	a.got = append(a.got, req.Packet.Seq)
	a.mu.Unlock()
	switch req.Packet.Op {
	case protocol.OpSendMsg:
		if string(req.Packet.Body) == "later" && req.Replies != nil {
			req.Replies.Later()
			a.mu.Lock()
			a.held = append(a.held, heldReply{req.Replies, req.Packet.Ver, req.Packet.Seq})
			a.mu.Unlock()
			return nil, nil
		}
		return &protocol.Packet{Op: protocol.OpSendMsgReply, Body: []byte(`{"code":0,"now":true}`)}, nil
	case protocol.OpSync:
		return &protocol.Packet{Op: protocol.OpSyncReply, Body: []byte(`{}`)}, nil
	}
	return a.fakeLogic.Receive(ctx, req)
}

func (a *asyncLogic) seqs() []int32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int32(nil), a.got...)
}

func (a *asyncLogic) heldCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.held)
}

// release answers the held replies, in order.
func (a *asyncLogic) release() {
	a.mu.Lock()
	held := a.held
	a.held = nil
	a.mu.Unlock()
	for _, h := range held {
		h.r.Reply(protocol.Packet{Ver: h.ver, Op: protocol.OpSendMsgReply, Seq: h.seq, Body: []byte(`{"code":0}`)})
	}
}

// TestAsyncReplies: the comet hands a connection's next Op 4 to logic while
// the previous one's reply is pending (pipelined sends), and keeps the
// replies in request order: a reply returned by Receive, and the next
// non-Op 4 request, wait for the pending replies.
func TestAsyncReplies(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			logic := &asyncLogic{}
			s := startServer(t, testConfig(), logic)
			c := dial(t, s, tr)
			c.auth("uid:1", "", "")
			s1 := c.send(protocol.OpSendMsg, []byte("later"))
			s2 := c.send(protocol.OpSendMsg, []byte("later"))
			s3 := c.send(protocol.OpSendMsg, []byte("now"))
			s4 := c.send(protocol.OpSync, []byte("{}"))
			waitFor(t, "the three sends handed to logic before any reply", func() bool { return len(logic.seqs()) >= 3 })
			time.Sleep(20 * time.Millisecond) // give a wrong implementation time to go on
			if got := logic.seqs(); len(got) != 3 || got[0] != s1 || got[1] != s2 || got[2] != s3 {
				t.Fatalf("logic got seqs %v, want %d %d %d (the sync waits for the pending replies)", got, s1, s2, s3)
			}
			logic.release()
			for _, want := range []int32{s1, s2, s3} {
				if p := c.expect(protocol.OpSendMsgReply); p.Seq != want || p.Ver != 1 {
					t.Fatalf("reply seq %d ver %d, want seq %d ver 1", p.Seq, p.Ver, want)
				}
			}
			if p := c.expect(protocol.OpSyncReply); p.Seq != s4 {
				t.Fatalf("sync reply seq %d, want %d", p.Seq, s4)
			}
			c.heartbeat()
		})
	}
}

// TestAsyncRepliesBound: a connection has at most maxPendingReplies
// replies pending; the reader waits for one before it reads on.
func TestAsyncRepliesBound(t *testing.T) {
	logic := &asyncLogic{}
	s := startServer(t, testConfig(), logic)
	c := dialTCP(t, s)
	c.auth("uid:1", "", "")
	var buf []byte
	for range maxPendingReplies + 1 {
		c.seq++
		buf = append(buf, c.packetBytes(protocol.Packet{Ver: 1, Op: protocol.OpSendMsg, Seq: c.seq, Body: []byte("later")})...)
	}
	c.write(buf)
	// The last send waits in Later until a reply is queued.
	waitFor(t, "every send handed to logic", func() bool { return len(logic.seqs()) == maxPendingReplies+1 })
	time.Sleep(20 * time.Millisecond)
	if n := logic.heldCount(); n != maxPendingReplies {
		t.Fatalf("%d replies pending, want %d", n, maxPendingReplies)
	}
	logic.release()
	waitFor(t, "the last send announced", func() bool { return logic.heldCount() == 1 })
	logic.release()
	for i := range maxPendingReplies + 1 {
		if p := c.expect(protocol.OpSendMsgReply); p.Seq != int32(i+2) { // Seq 1 was the auth
			t.Fatalf("reply %d has seq %d", i, p.Seq)
		}
	}
}

package devcluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goimdev/goim/client"
)

// TestClusterChaos: while users chat one-to-one and in a group on a cluster
// of 3 comets, 2 logics and 2 jobs, a comet is SIGKILLed (its clients
// reconnect to the others), a comet is drained by SIGTERM (its clients
// follow the addresses of its Op 6), a job is SIGKILLed in the middle of its
// batches, a logic is restarted and Redis is restarted empty. Every
// acknowledged message is stored exactly once with seqs 1..n, every device
// recovers all of them by Sync, and afterwards live delivery works again on
// every device (routes rebuilt).
func TestClusterChaos(t *testing.T) {
	c, redis := startCluster(t, 3, 2, 2)
	users := newUsers(t, c, "ch", 6)
	devs := map[int64][]*device{}
	var all []*device
	for i, u := range users {
		devs[u.id] = []*device{dialDevice(t, c, u, i, "tcp"), dialDevice(t, c, u, i+1, "ws")}
		all = append(all, devs[u.id]...)
	}
	group := groupOf(t, c, users[0], users)

	var (
		mu    sync.Mutex
		acks  = map[string]map[string]client.SendAck{}
		owner = map[string]user{} // a participant of each conversation
		sent  atomic.Int64
	)
	stop := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for i, u := range users {
		partner := users[i^1]
		d := devs[u.id][0]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				req := textReq(fmt.Sprintf("x-%s-p%d", u.name, k), partner.id, 0, "hi")
				if k%2 == 1 {
					req = textReq(fmt.Sprintf("x-%s-g%d", u.name, k), 0, group, "all")
				}
				ack, err := sendUntilAcked(ctx, d, req)
				if err != nil {
					errs <- err
					return
				}
				sent.Add(1)
				mu.Lock()
				if acks[ack.ConversationID] == nil {
					acks[ack.ConversationID] = map[string]client.SendAck{}
				}
				acks[ack.ConversationID][req.ClientMsgID] = ack
				owner[ack.ConversationID] = u
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	flowing := func(what string) {
		t.Helper()
		n := sent.Load()
		waitFor(t, "messages acknowledged "+what, 90*time.Second, func() bool { return sent.Load() >= n+30 })
	}
	flowing("before the chaos")
	// awayFrom waits until every device is connected to another comet than n.
	awayFrom := func(n *Node, what string) {
		t.Helper()
		waitFor(t, what, 60*time.Second, func() bool {
			for _, d := range all {
				if d.c.State() != client.StateConnected || d.c.Addr() == n.TCP || d.c.Addr() == n.WS {
					return false
				}
			}
			return true
		})
	}

	// 1. SIGKILL a comet: its clients reconnect to the others.
	comet1 := c.Nodes("comet")[0]
	if err := c.Kill(comet1); err != nil {
		t.Fatal(err)
	}
	awayFrom(comet1, "every client to reconnect away from the killed comet")
	flowing("after a comet was killed")
	if err := c.Restart(ctx, comet1); err != nil {
		t.Fatal(err)
	}

	// 2. SIGTERM a comet: it drains its clients with Op 6
	// server_draining carrying the other comets' addresses; they
	// reconnect there.
	comet2 := c.Nodes("comet")[1]
	if err := c.Stop(comet2, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	awayFrom(comet2, "every client to reconnect away from the drained comet")
	flowing("after a comet was drained")
	if err := c.Restart(ctx, comet2); err != nil {
		t.Fatal(err)
	}

	// 3. SIGKILL a job in the middle of its batches.
	job1 := c.Nodes("job")[0]
	if err := c.Kill(job1); err != nil {
		t.Fatal(err)
	}
	flowing("after a job was killed")
	if err := c.Restart(ctx, job1); err != nil {
		t.Fatal(err)
	}

	// 4. Restart a logic (graceful).
	logic1 := c.Nodes("logic")[0]
	if err := c.Stop(logic1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	flowing("while a logic was down")
	if err := c.Restart(ctx, logic1); err != nil {
		t.Fatal(err)
	}

	// 5. Restart Redis empty: sessions, rooms and caches are gone.
	redis.restart()
	flowing("after Redis restarted empty")

	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d messages acknowledged through the chaos", sent.Load())

	// Nothing acknowledged is lost, nothing is stored twice, no seq gap.
	for conv, a := range acks {
		checkHistory(t, c, owner[conv], conv, a)
	}
	// Every device recovers everything by Sync.
	sctx, scancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer scancel()
	for _, d := range all {
		for conv, a := range acks {
			if conv != groupConv(group) && conv != pairConv(d.u.id, users[indexOf(users, d.u)^1].id) {
				continue
			}
			got := map[string]bool{}
			after := int64(0)
			for {
				var resp client.SyncResp
				err := retry(sctx, func() (err error) {
					resp, err = d.c.Sync(sctx, client.SyncReq{ConversationID: conv, AfterSeq: after, Limit: 100})
					return err
				})
				if err != nil {
					t.Fatalf("%s sync %s: %v", d.u.name, conv, err)
				}
				for _, m := range resp.Messages {
					got[m.ClientMsgID] = true
					after = m.Seq
				}
				if !resp.HasMore {
					break
				}
			}
			for cmid := range a {
				if !got[cmid] {
					t.Fatalf("%s: Sync of %s misses acknowledged %s", d.u.name, conv, cmid)
				}
			}
		}
	}
	// Live delivery works again on every device: the routes lost with Redis
	// are rebuilt by the comets' heartbeats (Touch) within a heartbeat
	// interval or two. A message sent before that is only found by Sync
	// (checked above), so send until one arrives live.
	for i := 0; i < len(users); i += 2 {
		d := devs[users[i].id][0]
		receivers := []*device{devs[users[i].id][1], devs[users[i+1].id][0], devs[users[i+1].id][1]}
		deadline := time.Now().Add(60 * time.Second)
		for attempt := 0; ; attempt++ {
			ack, err := sendUntilAcked(ctx, d, textReq(fmt.Sprintf("final-%s-%d", users[i].name, attempt), users[i+1].id, 0, "after"))
			if err != nil {
				t.Fatal(err)
			}
			if waitUntil(5*time.Second, func() bool {
				for _, r := range receivers {
					if r.received(ack.MsgID) == 0 {
						return false
					}
				}
				return true
			}) {
				break
			}
			if time.Now().After(deadline) {
				for _, r := range receivers {
					t.Logf("%s: state %v on %s, received %d", r.u.name, r.c.State(), r.c.Addr(), r.received(ack.MsgID))
				}
				t.Fatalf("no live delivery to every device within 60s after the chaos")
			}
		}
	}
}

func indexOf(users []user, u user) int {
	for i, x := range users {
		if x.id == u.id {
			return i
		}
	}
	return -1
}

// retry calls f until it succeeds or ctx ends.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

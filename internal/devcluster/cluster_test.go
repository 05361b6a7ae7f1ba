package devcluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/client"
)

// groupOf creates a group owned by owner with members.
func groupOf(t *testing.T, c *Cluster, owner user, members []user) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []int64
	for _, m := range members {
		if m.id != owner.id {
			ids = append(ids, m.id)
		}
	}
	var resp struct {
		GroupID int64 `json:"group_id"`
	}
	if err := api(c, 1).WithToken(owner.token).Do(ctx, "POST", "/api/v1/groups", map[string]any{"name": "g", "members": ids}, &resp); err != nil {
		t.Fatalf("create group: %v", err)
	}
	return resp.GroupID
}

// traffic is the workload of the cluster tests: every user sends perPair
// messages to its partner (users 2k and 2k+1) and perGroup to the group,
// from its first device, each retried until acknowledged.
type traffic struct {
	mu   sync.Mutex
	acks map[string]map[string]client.SendAck // conversation -> client_msg_id -> ack
	from map[string]*device                   // client_msg_id -> sending device
}

func runTraffic(t *testing.T, users []user, devs map[int64][]*device, group int64, perPair, perGroup int, tag string, pace time.Duration) *traffic {
	t.Helper()
	tr := &traffic{acks: map[string]map[string]client.SendAck{}, from: map[string]*device{}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for i, u := range users {
		partner := users[i^1]
		d := devs[u.id][0]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range max(perPair, perGroup) {
				var reqs []client.SendReq
				if k < perPair {
					reqs = append(reqs, textReq(fmt.Sprintf("%s-%s-p%d", tag, u.name, k), partner.id, 0, "hi"))
				}
				if k < perGroup {
					reqs = append(reqs, textReq(fmt.Sprintf("%s-%s-g%d", tag, u.name, k), 0, group, "all"))
				}
				for _, req := range reqs {
					ack, err := sendUntilAcked(ctx, d, req)
					if err != nil {
						errs <- err
						return
					}
					tr.mu.Lock()
					if tr.acks[ack.ConversationID] == nil {
						tr.acks[ack.ConversationID] = map[string]client.SendAck{}
					}
					tr.acks[ack.ConversationID][req.ClientMsgID] = ack
					tr.from[req.ClientMsgID] = d
					tr.mu.Unlock()
				}
				if pace > 0 {
					time.Sleep(pace)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return tr
}

// recipients returns the devices that must receive a message of conv
// sent from dev: every device of every participant but dev.
func recipients(conv string, from *device, users []user, devs map[int64][]*device, group int64) []*device {
	var out []*device
	for _, u := range users {
		if conv != groupConv(group) && conv != pairConv(from.u.id, u.id) && u.id != from.u.id {
			continue
		}
		for _, d := range devs[u.id] {
			if d != from {
				out = append(out, d)
			}
		}
	}
	return out
}

func metric(t *testing.T, httpAddr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return "0"
}

// TestClusterMessaging: 3 comets, 2 logics and 2 jobs as real processes on
// MySQL, Redis, kfake and an embedded etcd. SDK clients spread over the
// comets (TCP and WebSocket) chat one-to-one and in a group: every
// acknowledged message is delivered once to every online device, in
// per-conversation order, and stored once with seqs 1..n. Room pushes reach
// members on every comet, and a comet with no member gets nothing.
func TestClusterMessaging(t *testing.T) {
	c, _ := startCluster(t, 3, 2, 2)
	users := newUsers(t, c, "cm", 6)
	devs := map[int64][]*device{}
	for i, u := range users {
		devs[u.id] = []*device{dialDevice(t, c, u, i, "tcp"), dialDevice(t, c, u, i+1, "ws")}
	}
	group := groupOf(t, c, users[0], users)
	tr := runTraffic(t, users, devs, group, 15, 8, "m", 0)

	for conv, acks := range tr.acks {
		for cmid, ack := range acks {
			for _, d := range recipients(conv, tr.from[cmid], users, devs, group) {
				waitFor(t, fmt.Sprintf("%s to receive %s (%s seq %d)", d.u.name, cmid, conv, ack.Seq), 30*time.Second,
					func() bool { return d.received(ack.MsgID) > 0 })
			}
		}
	}
	for _, ds := range devs {
		for _, d := range ds {
			d.checkInOrder(t)
			d.mu.Lock()
			for id, n := range d.ids {
				if n != 1 {
					t.Errorf("%s received %s %d times", d.u.name, id, n)
				}
			}
			d.mu.Unlock()
		}
	}
	for conv, acks := range tr.acks {
		u := tr.from[firstKey(acks)].u
		checkHistory(t, c, u, conv, acks)
	}

	// Room pushes: members on comet-1 and comet-2 only.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	comets := c.Nodes("comet")
	var members []*device
	for _, ds := range devs {
		for _, d := range ds {
			if a := d.c.Addr(); a == comets[0].TCP || a == comets[0].WS || a == comets[1].TCP || a == comets[1].WS {
				if err := d.c.JoinRoom(ctx, "live://cluster"); err != nil {
					t.Fatal(err)
				}
				members = append(members, d)
			}
		}
	}
	before := metric(t, comets[2].HTTP, `goim_comet_pushes_total{kind="room"}`)
	for i := range 5 {
		body := fmt.Sprintf("room-push-%d", i)
		if err := api(c, i).PushRoom(ctx, 1000, "live", "cluster", []byte(body)); err != nil {
			t.Fatal(err)
		}
		for _, d := range members {
			waitFor(t, d.u.name+" to get "+body, 20*time.Second, func() bool { return d.pushes(body) == 1 })
		}
	}
	if after := metric(t, comets[2].HTTP, `goim_comet_pushes_total{kind="room"}`); after != before {
		t.Fatalf("comet-3 has no member of the room but received room pushes: %s -> %s", before, after)
	}
}

func firstKey[V any](m map[string]V) string {
	for k := range m {
		return k
	}
	return ""
}

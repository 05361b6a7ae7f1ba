package devcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/client"
	"github.com/goimdev/goim/internal/testenv"
	"github.com/goimdev/goim/protocol"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// goimBinary builds cmd/goim once per test binary.
func goimBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "goim-cluster-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "goim")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/goimdev/goim/cmd/goim").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// redisServer is a redis-server process of the test's own, so that the
// test may restart or flush it without touching anyone else's data.
type redisServer struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("the cluster tests start a redis-server of their own: none in PATH (apt-get install -y redis-server)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := &redisServer{t: t, addr: addr, dir: t.TempDir()}
	r.start(bin)
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) start(bin string) {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(r.cmd, r.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", r.addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not come up: %v", r.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *redisServer) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// restart kills the server (losing everything: it keeps nothing on disk)
// and starts a new one on the same port.
func (r *redisServer) restart() {
	r.stop()
	bin, _ := exec.LookPath("redis-server")
	r.start(bin)
}

// startCluster starts a cluster for t on the machine's MySQL (a fresh
// database) and a Redis of its own.
func startCluster(t *testing.T, comets, logics, jobs int, args ...string) (*Cluster, *redisServer) {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster tests start real processes; skipped with -short")
	}
	dsn := testenv.MySQLDSN(t, "cluster")
	r := startRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "goim-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, Config{Bin: goimBinary(t), Dir: dir, Comets: comets, Logics: logics, Jobs: jobs,
		MySQLDSN: dsn, RedisAddr: r.addr, Args: append([]string{"--heartbeat", "5s", "--log-level", "info"}, args...),
		LogicArgs: []string{"--send-rate", "-1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("cluster close: %v", err)
		}
		if t.Failed() {
			for _, n := range c.Nodes("") {
				t.Logf("---- %s (%s) last lines:\n%s", n.Name, n.Log, tail(n.Log, 15))
			}
			t.Logf("logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return c, r
}

type user struct {
	id    int64
	name  string
	token string
}

func api(c *Cluster, i int) *client.API {
	logics := c.Nodes("logic")
	return &client.API{BaseURL: "http://" + logics[i%len(logics)].HTTP}
}

func newUsers(t *testing.T, c *Cluster, prefix string, n int) []user {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var us []user
	for i := range n {
		a := api(c, i)
		name := fmt.Sprintf("%s%d", prefix, i)
		id, err := a.Register(ctx, name, "correct horse battery", name)
		if err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
		lr, err := a.Login(ctx, name, "correct horse battery", "", "pc")
		if err != nil {
			t.Fatalf("login %s: %v", name, err)
		}
		us = append(us, user{id: id, name: name, token: lr.Token})
	}
	return us
}

// device is one SDK connection recording the message events it receives.
type device struct {
	u    user
	c    *client.Client
	mu   sync.Mutex
	seen map[string][]int64 // conversation -> seqs in arrival order
	ids  map[string]int     // msg_id -> times received
	push map[string]int     // business-op (room) push body -> times received
}

// dialDevice connects u to the comet at index i (transport tcp or ws) with
// every other comet as a fallback address.
func dialDevice(t *testing.T, c *Cluster, u user, i int, transport string) *device {
	t.Helper()
	comets := c.Nodes("comet")
	addr := func(n *Node) string {
		if transport == "ws" {
			return n.WS
		}
		return n.TCP
	}
	cfg := client.Config{Addr: addr(comets[i%len(comets)]), Transport: transport, Token: u.token, Platform: "pc", Reconnect: true,
		Key: fmt.Sprintf("%s-%s-%d", u.name, transport, i)}
	for j := 1; j < len(comets); j++ {
		cfg.Addrs = append(cfg.Addrs, addr(comets[(i+j)%len(comets)]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", cfg.Addr, u.name, err)
	}
	d := &device{u: u, c: cl, seen: map[string][]int64{}, ids: map[string]int{}, push: map[string]int{}}
	go d.record()
	t.Cleanup(func() { _ = cl.Close() })
	return d
}

func (d *device) record() {
	for p := range d.c.Packets() {
		if p.Op >= protocol.OpBusinessMin {
			d.mu.Lock()
			d.push[string(p.Body)]++
			d.mu.Unlock()
			continue
		}
		if p.Op != protocol.OpEvent {
			continue
		}
		ev, err := client.ParseEvent(p.Body)
		if err != nil || ev.Type != client.EventMessage || ev.Message == nil {
			continue
		}
		d.mu.Lock()
		d.seen[ev.Message.ConversationID] = append(d.seen[ev.Message.ConversationID], ev.Message.Seq)
		d.ids[ev.Message.MsgID]++
		d.mu.Unlock()
	}
}

// received returns how many times d received msgID.
func (d *device) received(msgID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ids[msgID]
}

// pushes returns how many times d received a room push with body.
func (d *device) pushes(body string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.push[body]
}

// sendUntilAcked sends req from d, retrying the same client_msg_id until
// it is acknowledged (through reconnects, node restarts) or ctx ends.
func sendUntilAcked(ctx context.Context, d *device, req client.SendReq) (client.SendAck, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := d.c.SendMessage(rctx, req)
		cancel()
		if err == nil {
			return ack, nil
		}
		select {
		case <-ctx.Done():
			return ack, fmt.Errorf("%s not acknowledged: last error %v", req.ClientMsgID, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func textReq(cmid string, to, group int64, text string) client.SendReq {
	return client.SendReq{ClientMsgID: cmid, ToUser: to, GroupID: group, Type: client.TypeText,
		Content: json.RawMessage(`{"text":` + strconv.Quote(text) + `}`)}
}

// history reads a conversation's whole history (as u) through a logic's
// HTTP API and returns the seqs and client_msg_ids of its messages.
func history(t *testing.T, c *Cluster, u user, conv string) (seqs []int64, cmids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := api(c, 0).WithToken(u.token)
	after := int64(0)
	for {
		var page struct {
			Messages []struct {
				Seq         int64  `json:"seq"`
				ClientMsgID string `json:"client_msg_id"`
				SenderID    int64  `json:"sender_id"`
				Type        int    `json:"type"`
			} `json:"messages"`
			HasMore bool `json:"has_more"`
		}
		if err := a.Do(ctx, "GET", fmt.Sprintf("/api/v1/conversations/%s/messages?after_seq=%d&limit=100", conv, after), nil, &page); err != nil {
			t.Fatalf("history of %s: %v", conv, err)
		}
		for _, m := range page.Messages {
			seqs = append(seqs, m.Seq)
			cmids = append(cmids, m.ClientMsgID)
			after = m.Seq
		}
		if !page.HasMore {
			return seqs, cmids
		}
	}
}

// checkHistory checks that conv holds exactly the acknowledged messages
// acks (by client_msg_id), once each, with seqs 1..n without a gap.
func checkHistory(t *testing.T, c *Cluster, u user, conv string, acks map[string]client.SendAck) {
	t.Helper()
	seqs, cmids := history(t, c, u, conv)
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("%s: seq %d at position %d (gap or repeat): %v", conv, s, i, seqs)
		}
	}
	count := map[string]int{}
	for _, id := range cmids {
		count[id]++
	}
	for id, n := range count {
		if n > 1 {
			t.Fatalf("%s: client_msg_id %s stored %d times", conv, id, n)
		}
	}
	for id, ack := range acks {
		if count[id] != 1 {
			t.Fatalf("%s: acknowledged message %s (seq %d) is not in the history", conv, id, ack.Seq)
		}
	}
}

// checkInOrder checks that each conversation's events arrived at d in
// increasing seq order, none twice.
func (d *device) checkInOrder(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for conv, seqs := range d.seen {
		if !sort.SliceIsSorted(seqs, func(i, j int) bool { return seqs[i] < seqs[j] }) {
			t.Errorf("%s on %s: events out of order: %v", d.u.name, conv, seqs)
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] == seqs[i-1] {
				t.Errorf("%s on %s: seq %d received twice", d.u.name, conv, seqs[i])
			}
		}
	}
}

func pairConv(a, b int64) string { return fmt.Sprintf("p_%d_%d", min(a, b), max(a, b)) }

func groupConv(g int64) string { return fmt.Sprintf("g_%d", g) }

// waitUntil polls cond until it holds (true) or d passes (false).
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func (r *redisServer) port() string {
	_, p, _ := net.SplitHostPort(r.addr)
	return p
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/kitex/pkg/klog"
	kserver "github.com/cloudwego/kitex/server"

	"github.com/goimdev/goim/comet"
	cometsvc "github.com/goimdev/goim/idl/kitex_gen/goimrpc/comet"
	"github.com/goimdev/goim/internal/discovery"
	"github.com/goimdev/goim/protocol"
)

// fakeLogic records what it is called with and answers from its fields.
type fakeLogic struct {
	mu         sync.Mutex
	calls      []string
	connectReq *comet.ConnectRequest
	connectErr error
	conn       [4]any // server, userID, key, connID of the last Disconnect/Heartbeat
	room       [2]string
	report     *comet.OnlineReport
	receive    *comet.ReceiveRequest
	reply      *protocol.Packet
	block      chan struct{} // when set, Receive waits for it
	entered    chan struct{} // when set, Receive signals it on entry
	returned   atomic.Bool   // set when a blocked Receive returns
}

func (f *fakeLogic) record(name string) {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	f.mu.Unlock()
}

// locked runs fn with f's lock held (the handler ran in another goroutine).
func (f *fakeLogic) locked(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeLogic) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == name {
			n++
		}
	}
	return n
}

func (f *fakeLogic) Connect(ctx context.Context, req *comet.ConnectRequest) (*comet.ConnectReply, error) {
	f.record("Connect")
	f.mu.Lock()
	f.connectReq = req
	connectErr := f.connectErr
	f.mu.Unlock()
	if connectErr != nil {
		return nil, connectErr
	}
	return &comet.ConnectReply{
		UserID: 42, Key: "dev-1", Room: "live://1", Platform: "ios",
		Accepts: []int32{1000, 1001}, Heartbeat: 270 * time.Second, Body: []byte(`{"code":0}`),
	}, nil
}

func (f *fakeLogic) Disconnect(ctx context.Context, server string, userID int64, key, connID string) error {
	f.record("Disconnect")
	f.mu.Lock()
	f.conn = [4]any{server, userID, key, connID}
	f.mu.Unlock()
	return nil
}

func (f *fakeLogic) Heartbeat(ctx context.Context, server string, userID int64, key, connID string) error {
	f.record("Heartbeat")
	f.mu.Lock()
	f.conn = [4]any{server, userID, key, connID}
	f.mu.Unlock()
	return nil
}

func (f *fakeLogic) RoomJoined(ctx context.Context, server, room string) error {
	f.record("RoomJoined")
	f.mu.Lock()
	f.room = [2]string{server, room}
	f.mu.Unlock()
	return nil
}

func (f *fakeLogic) RenewOnline(ctx context.Context, report *comet.OnlineReport) (map[string]int32, error) {
	f.record("RenewOnline")
	f.mu.Lock()
	f.report = report
	f.mu.Unlock()
	return map[string]int32{"live://1": 7, "live://2": 1}, nil
}

func (f *fakeLogic) Receive(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	f.record("Receive")
	// The body is only valid during the call: keep a copy.
	cp := *req
	cp.Packet.Body = bytes.Clone(req.Packet.Body)
	f.mu.Lock()
	f.receive = &cp
	reply := f.reply
	f.mu.Unlock()
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.block != nil {
		<-f.block
		defer f.returned.Store(true)
	}
	return reply, nil
}

// fakeNode is a comet node.
type fakeNode struct {
	mu     sync.Mutex
	keys   []string
	pushed []protocol.Packet
	rooms  map[string][]byte
	speed  int32
	counts map[string]int32

	batches [][]keysEntry // PushKeysBatch calls
}

type keysEntry struct {
	keys []string
	p    protocol.Packet
}

func (n *fakeNode) PushKeys(ctx context.Context, keys []string, p protocol.Packet) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(keys) == 0 {
		return errors.New("no keys")
	}
	n.keys = append(n.keys, keys...)
	n.pushed = append(n.pushed, p)
	return nil
}

func (n *fakeNode) PushKeysBatch(ctx context.Context, keys [][]string, ps []protocol.Packet) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(keys) != len(ps) {
		return errors.New("length mismatch")
	}
	b := make([]keysEntry, len(ps))
	for i := range ps {
		p := ps[i]
		p.Body = bytes.Clone(p.Body)
		b[i] = keysEntry{keys: slices.Clone(keys[i]), p: p}
	}
	n.batches = append(n.batches, b)
	return nil
}

func (n *fakeNode) PushRoom(ctx context.Context, room string, batch []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rooms == nil {
		n.rooms = make(map[string][]byte)
	}
	n.rooms[room] = batch
	return nil
}

func (n *fakeNode) Broadcast(ctx context.Context, p protocol.Packet, speed int32) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pushed = append(n.pushed, p)
	n.speed = speed
	return nil
}

func (n *fakeNode) RoomCounts() map[string]int32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.counts
}

func (n *fakeNode) locked(fn func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fn()
}

func (n *fakeNode) pushes() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.pushed)
}

// fakeWatcher sends the lists given to set, as discovery.Watcher does.
type fakeWatcher struct {
	lists chan []discovery.Instance
}

func newFakeWatcher(first []discovery.Instance) *fakeWatcher {
	w := &fakeWatcher{lists: make(chan []discovery.Instance, 16)}
	w.lists <- first
	return w
}

func (w *fakeWatcher) set(list ...discovery.Instance) { w.lists <- list }

func (w *fakeWatcher) Watch(ctx context.Context, service string) (<-chan []discovery.Instance, error) {
	out := make(chan []discovery.Instance)
	go func() {
		defer close(out)
		for {
			select {
			case l := <-w.lists:
				select {
				case out <- l:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func TestMain(m *testing.M) {
	klog.SetLevel(klog.LevelWarn)
	os.Exit(m.Run())
}

// quiet keeps the instance changes out of the test output.
var quiet = ClientConfig{Logger: slog.New(slog.DiscardHandler)}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func startLogic(t testing.TB, impl comet.Logic) *LogicServer {
	t.Helper()
	s, err := NewLogicServer("127.0.0.1:0", impl, ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

func startComet(t testing.TB, node CometNode) *CometServer {
	t.Helper()
	s, err := NewCometServer("127.0.0.1:0", node, ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

func TestLogicRoundTrip(t *testing.T) {
	f := &fakeLogic{reply: &protocol.Packet{Ver: 1, Op: 5, Seq: 9, Body: []byte(`{"seq":3}`)}}
	s := startLogic(t, f)
	c := NewLogicClientAddrs([]string{s.Addr().String()}, quiet)
	defer c.Close()
	ctx := context.Background()

	creq := &comet.ConnectRequest{Server: "c1", RemoteAddr: "1.2.3.4:5", Transport: "ws",
		Body: []byte(`{"token":"t"}`), QueryToken: "q", ConnID: "c1-x-1"}
	got, err := c.Connect(ctx, creq)
	if err != nil {
		t.Fatal(err)
	}
	want := &comet.ConnectReply{UserID: 42, Key: "dev-1", Room: "live://1", Platform: "ios",
		Accepts: []int32{1000, 1001}, Heartbeat: 270 * time.Second, Body: []byte(`{"code":0}`)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Connect reply = %+v, want %+v", got, want)
	}
	f.locked(func() {
		if fmt.Sprint(f.connectReq) != fmt.Sprint(creq) {
			t.Errorf("Connect request = %+v, want %+v", f.connectReq, creq)
		}
	})

	if err := c.Disconnect(ctx, "c1", 42, "dev-1", "c1-x-1"); err != nil {
		t.Fatal(err)
	}
	f.locked(func() {
		if f.conn != [4]any{"c1", int64(42), "dev-1", "c1-x-1"} {
			t.Errorf("Disconnect got %v", f.conn)
		}
	})
	if err := c.Heartbeat(ctx, "c1", 43, "dev-2", "c1-x-2"); err != nil {
		t.Fatal(err)
	}
	f.locked(func() {
		if f.conn != [4]any{"c1", int64(43), "dev-2", "c1-x-2"} {
			t.Errorf("Heartbeat got %v", f.conn)
		}
	})
	if err := c.RoomJoined(ctx, "c1", "live://9"); err != nil {
		t.Fatal(err)
	}
	f.locked(func() {
		if f.room != [2]string{"c1", "live://9"} {
			t.Errorf("RoomJoined got %v", f.room)
		}
	})

	taken := time.Unix(1700000000, 123456789)
	rep := &comet.OnlineReport{Server: "c1", TakenAt: taken, TCPAddr: "h:1", WSAddr: "h:2",
		Conns: 10, IPs: 3, Rooms: map[string]int32{"live://1": 4}}
	online, err := c.RenewOnline(ctx, rep)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(online) != fmt.Sprint(map[string]int32{"live://1": 7, "live://2": 1}) {
		t.Errorf("RenewOnline = %v", online)
	}
	f.locked(func() {
		if !f.report.TakenAt.Equal(taken) {
			t.Errorf("TakenAt = %v, want %v", f.report.TakenAt, taken)
		}
		got := *f.report
		got.TakenAt = taken // compare the rest (location aside)
		if fmt.Sprint(&got) != fmt.Sprint(rep) {
			t.Errorf("report = %+v, want %+v", &got, rep)
		}
	})
	// A zero TakenAt stays zero.
	if _, err := c.RenewOnline(ctx, &comet.OnlineReport{Server: "c1"}); err != nil {
		t.Fatal(err)
	}
	f.locked(func() {
		if !f.report.TakenAt.IsZero() {
			t.Errorf("zero TakenAt came back as %v", f.report.TakenAt)
		}
	})

	rreq := &comet.ReceiveRequest{Server: "c1", UserID: 42, Key: "dev-1",
		Packet: protocol.Packet{Ver: 1, Op: 4, Seq: 9, Body: []byte{0, 1, 2, 0xff}}}
	p, err := c.Receive(ctx, rreq)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p) != fmt.Sprint(f.reply) {
		t.Errorf("Receive reply = %+v, want %+v", p, f.reply)
	}
	f.locked(func() {
		if fmt.Sprint(f.receive) != fmt.Sprint(rreq) {
			t.Errorf("Receive request = %+v, want %+v", f.receive, rreq)
		}
	})
	// No reply (pushed later) stays nil.
	f.mu.Lock()
	f.reply = nil
	f.mu.Unlock()
	if p, err := c.Receive(ctx, rreq); err != nil || p != nil {
		t.Errorf("Receive with no reply = %v, %v; want nil, nil", p, err)
	}
}

func TestConnectCloseErrorSurvives(t *testing.T) {
	f := &fakeLogic{connectErr: fmt.Errorf("auth: %w", &comet.CloseError{Code: "token_expired", Reason: "expired 3s ago"})}
	s := startLogic(t, f)
	c := NewLogicClientAddrs([]string{s.Addr().String()}, quiet)
	defer c.Close()

	_, err := c.Connect(context.Background(), &comet.ConnectRequest{Server: "c1", ConnID: "x"})
	ce, ok := errors.AsType[*comet.CloseError](err)
	if !ok {
		t.Fatalf("Connect error = %v (%T), want a *comet.CloseError", err, err)
	}
	if *ce != (comet.CloseError{Code: "token_expired", Reason: "expired 3s ago"}) {
		t.Errorf("CloseError = %+v", ce)
	}
	if code := comet.CloseCode(err); code != "token_expired" {
		t.Errorf("CloseCode = %q", code)
	}

	// Any other error is an error, closed as unauthorized.
	f.locked(func() { f.connectErr = errors.New("db down") })
	_, err = c.Connect(context.Background(), &comet.ConnectRequest{Server: "c1", ConnID: "y"})
	if err == nil {
		t.Fatal("Connect with a plain error succeeded")
	}
	if code := comet.CloseCode(err); code != protocol.CodeUnauthorized {
		t.Errorf("CloseCode of a plain error = %q, want %q", code, protocol.CodeUnauthorized)
	}

	// No logic reachable: unavailable (clients retry), not unauthorized
	// (an SDK would give up).
	dead := NewLogicClientAddrs([]string{deadAddr(t)}, ClientConfig{Retries: -1, Timeout: time.Second})
	defer dead.Close()
	_, err = dead.Connect(context.Background(), &comet.ConnectRequest{Server: "c1", ConnID: "z"})
	if code := comet.CloseCode(err); code != protocol.CodeUnavailable {
		t.Errorf("CloseCode with no logic reachable = %q (%v), want %q", code, err, protocol.CodeUnavailable)
	}
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestLogicClientRetries(t *testing.T) {
	ctx := context.Background()
	t.Run("dead instance", func(t *testing.T) {
		// A dead instance costs nothing: the request was never sent, so
		// every call, idempotent or not, goes on to the live one.
		f := &fakeLogic{}
		s := startLogic(t, f)
		w := newFakeWatcher([]discovery.Instance{
			{Service: "logic", Name: "dead", Addr: deadAddr(t)},
			{Service: "logic", Name: "live", Addr: s.Addr().String()},
		})
		c, err := NewLogicClient(ctx, w, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := range 4 {
			if err := c.Heartbeat(ctx, "c1", 1, "k", "id"); err != nil {
				t.Fatalf("Heartbeat %d: %v", i, err)
			}
			if _, err := c.Receive(ctx, &comet.ReceiveRequest{Packet: protocol.Packet{Op: 4}}); err != nil {
				t.Fatalf("Receive %d: %v", i, err)
			}
			if _, err := c.Connect(ctx, &comet.ConnectRequest{ConnID: "x"}); err != nil {
				t.Fatalf("Connect %d: %v", i, err)
			}
		}
		if n := f.count("Receive"); n != 4 {
			t.Errorf("Receive reached logic %d times, want 4", n)
		}

		// The dead instance leaves; then the live one: ErrNoInstance.
		w.set(discovery.Instance{Service: "logic", Name: "live", Addr: s.Addr().String()})
		waitFor(t, "one instance", func() bool { return len(c.Instances()) == 1 })
		w.set()
		waitFor(t, "no instance", func() bool { return len(c.Instances()) == 0 })
		if err := c.Heartbeat(ctx, "c1", 1, "k", "id"); !errors.Is(err, ErrNoInstance) {
			t.Errorf("Heartbeat with no instance = %v, want ErrNoInstance", err)
		}
	})
	t.Run("failing instances", func(t *testing.T) {
		// Once sent, only idempotent calls are repeated (1+Retries attempts
		// over the instances); Receive and Connect are not.
		fa, fb := &failingLogic{}, &failingLogic{}
		sa, sb := startLogic(t, fa), startLogic(t, fb)
		c := NewLogicClientAddrs([]string{sa.Addr().String(), sb.Addr().String()}, quiet)
		defer c.Close()
		total := func(name string) int { return fa.count(name) + fb.count(name) }

		if err := c.Heartbeat(ctx, "c1", 1, "k", "id"); err == nil {
			t.Fatal("Heartbeat succeeded")
		}
		if err := c.RoomJoined(ctx, "c1", "r"); err == nil {
			t.Fatal("RoomJoined succeeded")
		}
		if _, err := c.RenewOnline(ctx, &comet.OnlineReport{}); err == nil {
			t.Fatal("RenewOnline succeeded")
		}
		if _, err := c.Receive(ctx, &comet.ReceiveRequest{}); err == nil || !strings.Contains(err.Error(), "failing") {
			t.Fatalf("Receive = %v, want logic's error", err)
		} else {
			t.Logf("Receive error: %v", err)
		}
		if _, err := c.Connect(ctx, &comet.ConnectRequest{}); err == nil {
			t.Fatal("Connect succeeded")
		}
		if err := c.Disconnect(ctx, "c1", 1, "k", "id"); err == nil {
			t.Fatal("Disconnect succeeded")
		}
		for name, want := range map[string]int{"Heartbeat": 3, "RoomJoined": 3, "RenewOnline": 3, "Receive": 1, "Connect": 1, "Disconnect": 1} {
			if got := total(name); got != want {
				t.Errorf("%s reached logic %d times, want %d", name, got, want)
			}
		}
		if fa.count("Heartbeat") == 0 || fb.count("Heartbeat") == 0 {
			t.Errorf("Heartbeat retries stayed on one instance: %d and %d", fa.count("Heartbeat"), fb.count("Heartbeat"))
		}
	})
}

// failingLogic fails every call, counting them.
type failingLogic struct{ fakeLogic }

var errFailing = errors.New("failing")

func (f *failingLogic) Connect(ctx context.Context, req *comet.ConnectRequest) (*comet.ConnectReply, error) {
	f.record("Connect")
	return nil, errFailing
}

func (f *failingLogic) Disconnect(ctx context.Context, server string, userID int64, key, connID string) error {
	f.record("Disconnect")
	return errFailing
}

func (f *failingLogic) Heartbeat(ctx context.Context, server string, userID int64, key, connID string) error {
	f.record("Heartbeat")
	return errFailing
}

func (f *failingLogic) RoomJoined(ctx context.Context, server, room string) error {
	f.record("RoomJoined")
	return errFailing
}

func (f *failingLogic) RenewOnline(ctx context.Context, report *comet.OnlineReport) (map[string]int32, error) {
	f.record("RenewOnline")
	return nil, errFailing
}

func (f *failingLogic) Receive(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	f.record("Receive")
	return nil, errFailing
}

func TestLogicServerStopDrains(t *testing.T) {
	f := &fakeLogic{
		reply:   &protocol.Packet{Op: 5, Seq: 1},
		block:   make(chan struct{}),
		entered: make(chan struct{}, 1),
	}
	s, err := NewLogicServer("127.0.0.1:0", f, ServerConfig{ExitWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := NewLogicClientAddrs([]string{s.Addr().String()}, ClientConfig{Timeout: 20 * time.Second, Logger: quiet.Logger})
	defer c.Close()

	type result struct {
		p   *protocol.Packet
		err error
	}
	res := make(chan result, 1)
	go func() {
		p, err := c.Receive(context.Background(), &comet.ReceiveRequest{Packet: protocol.Packet{Op: 4}})
		res <- result{p, err}
	}()
	<-f.entered // the call is in flight

	stopped := make(chan error, 1)
	var returnedAtStop atomic.Bool
	go func() {
		err := s.Stop(context.Background())
		returnedAtStop.Store(f.returned.Load())
		stopped <- err
	}()
	// New connections are refused once the listener is closed.
	waitFor(t, "listener closed", func() bool {
		nc, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			return true
		}
		nc.Close()
		return false
	})
	close(f.block)
	r := <-res
	if r.err != nil || r.p == nil || r.p.Op != 5 {
		t.Fatalf("in-flight Receive = %+v, %v; want the reply", r.p, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !returnedAtStop.Load() {
		t.Error("Stop returned before the in-flight call")
	}
}

func TestCometRoundTrip(t *testing.T) {
	n := &fakeNode{counts: map[string]int32{"live://1": 3}}
	s := startComet(t, n)
	c, err := NewCometClient(s.Addr().String(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	p := protocol.Packet{Ver: 1, Op: 1001, Seq: 0, Body: []byte("hello\x00")}
	if err := c.PushKeys(ctx, []string{"k1", "k2"}, p); err != nil {
		t.Fatal(err)
	}
	n.locked(func() {
		if !slices.Equal(n.keys, []string{"k1", "k2"}) || fmt.Sprint(n.pushed[0]) != fmt.Sprint(p) {
			t.Errorf("PushKeys got %v %+v", n.keys, n.pushed)
		}
	})
	// An error of the node comes back as an error.
	if err := c.PushKeys(ctx, nil, p); err == nil {
		t.Error("PushKeys of no key: no error")
	}

	batch := protocol.Append(nil, protocol.Packet{Ver: 1, Op: 5, Body: []byte("a")})
	batch = protocol.Append(batch, protocol.Packet{Ver: 1, Op: 5, Body: []byte("b")})
	if err := c.PushRoom(ctx, "live://1", batch); err != nil {
		t.Fatal(err)
	}
	n.locked(func() {
		if !bytes.Equal(n.rooms["live://1"], batch) {
			t.Errorf("PushRoom got %x, want %x", n.rooms["live://1"], batch)
		}
	})

	b := protocol.Packet{Ver: 1, Op: 1002, Body: []byte("all")}
	if err := c.Broadcast(ctx, b, 500); err != nil {
		t.Fatal(err)
	}
	n.locked(func() {
		if len(n.pushed) != 2 || fmt.Sprint(n.pushed[1]) != fmt.Sprint(b) || n.speed != 500 {
			t.Errorf("Broadcast got %+v speed %d", n.pushed, n.speed)
		}
	})

	rooms, err := c.Rooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rooms) != fmt.Sprint(map[string]int32{"live://1": 3}) {
		t.Errorf("Rooms = %v, want live://1:3", rooms)
	}
	n.mu.Lock()
	n.counts = nil
	n.mu.Unlock()
	if rooms, err := c.Rooms(ctx); err != nil || rooms == nil || len(rooms) != 0 {
		t.Errorf("Rooms of an empty node = %v, %v; want an empty map", rooms, err)
	}
}

// TestCometPushKeysBatch: a PushKeysBatch call reaches the node as one
// call with every entry, in order, bodies and headers intact.
func TestCometPushKeysBatch(t *testing.T) {
	n := &fakeNode{}
	s := startComet(t, n)
	c, err := NewCometClient(s.Addr().String(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	var keys [][]string
	var ps []protocol.Packet
	for i := range 50 {
		keys = append(keys, []string{"k" + strconv.Itoa(i%7), "all"})
		ps = append(ps, protocol.Packet{Ver: 1, Op: protocol.OpEvent, Seq: int32(i), Body: []byte("body " + strconv.Itoa(i))})
	}
	keys[3] = nil // an entry without keys travels too
	if err := c.PushKeysBatch(ctx, keys, ps); err != nil {
		t.Fatal(err)
	}
	n.locked(func() {
		if len(n.batches) != 1 || len(n.batches[0]) != len(ps) {
			t.Fatalf("node got %d calls, want one of %d entries", len(n.batches), len(ps))
		}
		for i, e := range n.batches[0] {
			if !slices.Equal(e.keys, keys[i]) || fmt.Sprint(e.p) != fmt.Sprint(ps[i]) {
				t.Errorf("entry %d: %v %+v, want %v %+v", i, e.keys, e.p, keys[i], ps[i])
			}
		}
	})
	if err := c.PushKeysBatch(ctx, keys[:2], ps[:1]); err == nil {
		t.Error("PushKeysBatch with mismatched lengths: no error")
	}
}

// TestCometPushKeysBatchOldNode: a comet that does not know PushKeysBatch
// (built before it) still gets every entry, in order, as PushKeys calls.
func TestCometPushKeysBatchOldNode(t *testing.T) {
	n := &fakeNode{}
	h := &cometHandler{node: n}
	s, err := listen("comet", "127.0.0.1:0", ServerConfig{}, func(opts ...kserver.Option) kserver.Server {
		svr := kserver.NewServer(append(opts, kserver.WithCompatibleMiddlewareForUnary())...)
		si := cometsvc.NewServiceInfo()
		delete(si.Methods, "PushKeysBatch")
		if err := svr.RegisterService(si, h); err != nil {
			t.Fatal(err)
		}
		return svr
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.stop(context.Background()) })
	c, err := NewCometClient(s.addr().String(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 2 { // the second call goes straight to PushKeys
		keys := [][]string{{"a"}, {"b", "c"}, {"a"}}
		ps := []protocol.Packet{{Ver: 1, Seq: 1, Body: []byte("1")}, {Ver: 1, Seq: 2}, {Ver: 1, Seq: 3}}
		if err := c.PushKeysBatch(context.Background(), keys, ps); err != nil {
			t.Fatal(err)
		}
	}
	n.locked(func() {
		if len(n.batches) != 0 {
			t.Errorf("the old node got %d batches", len(n.batches))
		}
		var seqs []int32
		for _, p := range n.pushed {
			seqs = append(seqs, p.Seq)
		}
		if !slices.Equal(n.keys, []string{"a", "b", "c", "a", "a", "b", "c", "a"}) || !slices.Equal(seqs, []int32{1, 2, 3, 1, 2, 3}) {
			t.Errorf("PushKeys got keys %v seqs %v", n.keys, seqs)
		}
	})
}

func TestCometsFollowsWatcher(t *testing.T) {
	na, nb := &fakeNode{}, &fakeNode{}
	sa, sb := startComet(t, na), startComet(t, nb)
	a := discovery.Instance{Service: "comet", Name: "a", Addr: sa.Addr().String()}
	b := discovery.Instance{Service: "comet", Name: "b", Addr: sb.Addr().String()}

	w := newFakeWatcher([]discovery.Instance{a})
	cs, err := NewComets(context.Background(), w, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ctx := context.Background()
	p := protocol.Packet{Op: 1001, Body: []byte("x")}

	// The first list is in place when NewComets returns.
	if got := cs.Names(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Names = %v, want [a]", got)
	}
	if _, ok := cs.Comet("b"); ok {
		t.Fatal("b known before it was added")
	}

	// b added.
	w.set(a, b)
	waitFor(t, "b added", func() bool { _, ok := cs.Comet("b"); return ok })
	if len(cs.All()) != 2 {
		t.Errorf("All = %v", cs.All())
	}
	ca, _ := cs.Client("a")
	for name, c := range cs.All() {
		if err := c.PushKeys(ctx, []string{name}, p); err != nil {
			t.Fatalf("push to %s: %v", name, err)
		}
	}
	if na.pushes() != 1 || nb.pushes() != 1 {
		t.Errorf("pushes a=%d b=%d, want 1 and 1", na.pushes(), nb.pushes())
	}

	// a removed: its client is gone and closed.
	w.set(b)
	waitFor(t, "a removed", func() bool { _, ok := cs.Comet("a"); return !ok })
	if len(cs.All()) != 1 {
		t.Errorf("All = %v", cs.All())
	}
	if err := ca.PushKeys(ctx, []string{"a"}, p); !errors.Is(err, ErrClosed) {
		t.Errorf("push on the client of a removed comet = %v, want ErrClosed", err)
	}

	// b moves to another address under the same name: the new address is used.
	nb2 := &fakeNode{}
	sb2 := startComet(t, nb2)
	w.set(discovery.Instance{Service: "comet", Name: "b", Addr: sb2.Addr().String()})
	waitFor(t, "b moved", func() bool {
		c, ok := cs.Client("b")
		return ok && c.Addr() == sb2.Addr().String()
	})
	c, _ := cs.Comet("b")
	if err := c.PushKeys(ctx, []string{"b"}, p); err != nil {
		t.Fatal(err)
	}
	if nb2.pushes() != 1 || nb.pushes() != 1 {
		t.Errorf("pushes old b=%d new b=%d, want 1 and 1", nb.pushes(), nb2.pushes())
	}
}

// echoLogic answers Receive with a fixed reply and records nothing.
type echoLogic struct {
	fakeLogic
	reply *protocol.Packet
}

func (e *echoLogic) Receive(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	return e.reply, nil
}

// BenchmarkReceiveRoundTrip measures one Receive call, comet -> logic ->
// comet, over loopback with a 64-byte body.
func BenchmarkReceiveRoundTrip(b *testing.B) {
	f := &echoLogic{reply: &protocol.Packet{Ver: 1, Op: 5, Seq: 1, Body: []byte(`{"seq":1,"msg_id":"1"}`)}}
	s := startLogic(b, f)
	c := NewLogicClientAddrs([]string{s.Addr().String()}, quiet)
	defer c.Close()
	req := &comet.ReceiveRequest{Server: "c1", UserID: 1, Key: "k",
		Packet: protocol.Packet{Ver: 1, Op: 4, Seq: 1, Body: bytes.Repeat([]byte("x"), 64)}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Receive(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceiveRoundTripParallel is the same with concurrent callers.
func BenchmarkReceiveRoundTripParallel(b *testing.B) {
	f := &echoLogic{reply: &protocol.Packet{Ver: 1, Op: 5, Seq: 1, Body: []byte(`{"seq":1,"msg_id":"1"}`)}}
	s := startLogic(b, f)
	c := NewLogicClientAddrs([]string{s.Addr().String()}, quiet)
	defer c.Close()
	req := &comet.ReceiveRequest{Server: "c1", UserID: 1, Key: "k",
		Packet: protocol.Packet{Ver: 1, Op: 4, Seq: 1, Body: bytes.Repeat([]byte("x"), 64)}}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Receive(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPushRoomRoundTrip measures one PushRoom call, job -> comet, with
// a batch of 16 packets of 200 bytes.
func BenchmarkPushRoomRoundTrip(b *testing.B) {
	s := startComet(b, &fakeNode{})
	c, err := NewCometClient(s.Addr().String(), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var batch []byte
	for range 16 {
		batch = protocol.Append(batch, protocol.Packet{Ver: 1, Op: 1001, Body: bytes.Repeat([]byte("x"), 200)})
	}
	ctx := context.Background()
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.PushRoom(ctx, "live://1", batch); err != nil {
			b.Fatal(err)
		}
	}
}

// Heartbeats carries many connections' refreshes in one call; a logic that
// does not take batches gets them one by one.
func TestLogicHeartbeats(t *testing.T) {
	f := &fakeLogic{}
	s := startLogic(t, f)
	c := NewLogicClientAddrs([]string{s.Addr().String()}, quiet)
	defer c.Close()
	refs := []comet.ConnRef{{UserID: 1, Key: "a", ConnID: "c1-1"}, {UserID: 2, Key: "b", ConnID: "c1-2"}}
	if err := c.Heartbeats(context.Background(), "c1", refs); err != nil {
		t.Fatal(err)
	}
	if n := f.count("Heartbeat"); n != 2 {
		t.Fatalf("Heartbeat calls %d, want 2", n)
	}
	f.mu.Lock()
	last := f.conn
	f.mu.Unlock()
	if last != [4]any{"c1", int64(2), "b", "c1-2"} {
		t.Fatalf("last refresh %v", last)
	}
}

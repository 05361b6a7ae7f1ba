package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/protocol"
)

// fakeComet records what job sends it.
type fakeComet struct {
	name string
	err  error // returned by every call

	mu         sync.Mutex
	keys       []keysCall          // one per keys push, single or batched, in order
	keyBatches []int               // entries of each PushKeysBatch call
	rooms      map[string][][]byte // room -> batches, in call order
	roomCalls  int
	broadcasts []broadcastCall
}

type keysCall struct {
	keys []string
	p    protocol.Packet
}

type broadcastCall struct {
	p     protocol.Packet
	speed int32
}

func newFakeComet(name string) *fakeComet {
	return &fakeComet{name: name, rooms: make(map[string][][]byte)}
}

func clonePacket(p protocol.Packet) protocol.Packet {
	p.Body = bytes.Clone(p.Body)
	return p
}

func (c *fakeComet) PushKeys(ctx context.Context, keys []string, p protocol.Packet) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys = append(c.keys, keysCall{keys: slices.Clone(keys), p: clonePacket(p)})
	return c.err
}

func (c *fakeComet) PushKeysBatch(ctx context.Context, keys [][]string, ps []protocol.Packet) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(keys) != len(ps) {
		return fmt.Errorf("PushKeysBatch: %d key lists for %d packets", len(keys), len(ps))
	}
	for i := range ps {
		c.keys = append(c.keys, keysCall{keys: slices.Clone(keys[i]), p: clonePacket(ps[i])})
	}
	c.keyBatches = append(c.keyBatches, len(ps))
	return c.err
}

func (c *fakeComet) PushRoom(ctx context.Context, room string, batch []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rooms[room] = append(c.rooms[room], bytes.Clone(batch))
	c.roomCalls++
	return c.err
}

func (c *fakeComet) Broadcast(ctx context.Context, p protocol.Packet, speed int32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.broadcasts = append(c.broadcasts, broadcastCall{p: clonePacket(p), speed: speed})
	return c.err
}

// roomPackets returns the packets received for room, batches split.
func (c *fakeComet) roomPackets(t testing.TB, room string) []protocol.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []protocol.Packet
	for _, b := range c.rooms[room] {
		if err := protocol.SplitBatch(b, func(p protocol.Packet) error {
			out = append(out, clonePacket(p))
			return nil
		}); err != nil {
			t.Errorf("comet %s room %s: bad batch: %v", c.name, room, err)
		}
	}
	return out
}

func (c *fakeComet) batches(room string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.rooms[room])
}

func (c *fakeComet) calls() (keys, rooms, broadcasts int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys), c.roomCalls, len(c.broadcasts)
}

type harness struct {
	t      *testing.T
	bus    *bus.Memory
	reg    *session.Memory
	comets *StaticComets
	fakes  map[string]*fakeComet
	job    *Job
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newHarness builds a job on the memory bus and registry with fake comets
// c1..c3. start false leaves Start to the test.
func newHarness(t *testing.T, cfg Config, start bool) *harness {
	t.Helper()
	h := &harness{
		t:      t,
		bus:    bus.NewMemory(bus.MemoryConfig{}),
		reg:    session.NewMemory(session.MemoryConfig{}),
		comets: NewStaticComets(),
		fakes:  make(map[string]*fakeComet),
	}
	for _, n := range []string{"c1", "c2", "c3"} {
		h.fakes[n] = newFakeComet(n)
		h.comets.Set(n, h.fakes[n])
	}
	j, err := New(cfg, Deps{Bus: h.bus, Sessions: h.reg, Comets: h.comets}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	h.job = j
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := j.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		h.bus.Close()
	})
	if start {
		h.start()
	}
	return h
}

func (h *harness) start() {
	h.t.Helper()
	if err := h.job.Start(h.t.Context()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) publish(key string, msgs ...pushmsg.Msg) {
	h.t.Helper()
	bm := make([]bus.Message, len(msgs))
	for i := range msgs {
		bm[i] = bus.Message{Topic: bus.TopicPush, Key: key, Value: msgs[i].Marshal()}
	}
	if err := h.bus.Publish(context.Background(), bm...); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) members(server string, rooms map[string]int32) {
	h.t.Helper()
	if err := h.reg.SetServer(context.Background(), session.ServerInfo{Name: server}, rooms); err != nil {
		h.t.Fatal(err)
	}
}

func roomMsg(room string, seq int) pushmsg.Msg {
	return pushmsg.Msg{Type: pushmsg.Room, Operation: 1001, Seq: int32(seq), Room: room, Body: []byte("m" + strconv.Itoa(seq))}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func TestKeysRouting(t *testing.T) {
	h := newHarness(t, Config{}, true)
	unknownBefore := counterValue(droppedUnknown)
	msgs := []struct {
		server string
		keys   []string
		seq    int32
	}{
		{"c1", []string{"a", "b"}, 1},
		{"c2", []string{"c"}, 2},
		{"c1", []string{"d"}, 3},
		{"c9", []string{"lost"}, 4}, // unknown comet: dropped
		{"c2", nil, 5},              // no keys: nothing to do
	}
	for _, m := range msgs {
		h.publish("user", pushmsg.Msg{Type: pushmsg.Keys, Operation: protocol.OpEvent, Seq: m.seq, Server: m.server, Keys: m.keys, Body: []byte(`{"n":` + strconv.Itoa(int(m.seq)) + `}`)})
	}
	// Same key, one partition: once seq 3 is in, everything before was handled.
	waitFor(t, "c1's second push", func() bool { k, _, _ := h.fakes["c1"].calls(); return k == 2 })
	waitFor(t, "the unknown comet's drop", func() bool { return counterValue(droppedUnknown) == unknownBefore+1 })

	want := map[string][]keysCall{
		"c1": {
			{[]string{"a", "b"}, protocol.Packet{Ver: 1, Op: protocol.OpEvent, Seq: 1, Body: []byte(`{"n":1}`)}},
			{[]string{"d"}, protocol.Packet{Ver: 1, Op: protocol.OpEvent, Seq: 3, Body: []byte(`{"n":3}`)}},
		},
		"c2": {
			{[]string{"c"}, protocol.Packet{Ver: 1, Op: protocol.OpEvent, Seq: 2, Body: []byte(`{"n":2}`)}},
		},
		"c3": nil,
	}
	for name, calls := range want {
		c := h.fakes[name]
		c.mu.Lock()
		got := slices.Clone(c.keys)
		rooms, bcasts := c.roomCalls, len(c.broadcasts)
		c.mu.Unlock()
		if len(got) != len(calls) {
			t.Fatalf("%s: %d PushKeys calls, want %d: %+v", name, len(got), len(calls), got)
		}
		for i := range calls {
			if !slices.Equal(got[i].keys, calls[i].keys) || got[i].p.Op != calls[i].p.Op ||
				got[i].p.Seq != calls[i].p.Seq || got[i].p.Ver != 1 || !bytes.Equal(got[i].p.Body, calls[i].p.Body) {
				t.Errorf("%s call %d: %+v, want %+v", name, i, got[i], calls[i])
			}
		}
		if rooms != 0 || bcasts != 0 {
			t.Errorf("%s got room or broadcast pushes", name)
		}
	}
}

// TestKeysBatchPerComet: the keys pushes of one bus batch reach each comet
// in one PushKeysBatch call, in bus order (the order a connection sees).
func TestKeysBatchPerComet(t *testing.T) {
	h := newHarness(t, Config{}, false)
	var msgs []bus.Message
	var want1, want2 []int32
	for i := range 20 {
		server, keys := "c1", []string{"k" + strconv.Itoa(i%3)}
		if i%4 == 3 {
			server, keys = "c2", []string{"x"}
			want2 = append(want2, int32(i))
		} else {
			want1 = append(want1, int32(i))
		}
		m := pushmsg.Msg{Type: pushmsg.Keys, Operation: protocol.OpEvent, Seq: int32(i), Server: server, Keys: keys, Body: []byte("b")}
		msgs = append(msgs, bus.Message{Topic: bus.TopicPush, Key: "u", Value: m.Marshal()})
	}
	batchesBefore := counterValue(metricKeysBatches)
	if err := h.job.handle(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]int32{"c1": want1, "c2": want2} {
		c := h.fakes[name]
		c.mu.Lock()
		batches, got := slices.Clone(c.keyBatches), slices.Clone(c.keys)
		c.mu.Unlock()
		if !slices.Equal(batches, []int{len(want)}) {
			t.Errorf("%s: PushKeysBatch calls of %v entries, want one of %d", name, batches, len(want))
		}
		var seqs []int32
		for _, kc := range got {
			seqs = append(seqs, kc.p.Seq)
		}
		if !slices.Equal(seqs, want) {
			t.Errorf("%s: seqs %v, want %v", name, seqs, want)
		}
	}
	if got := counterValue(metricKeysBatches) - batchesBefore; got != 2 {
		t.Errorf("goim_job_keys_batches_total grew by %v, want 2", got)
	}
}

// TestKeysBatchSplitBySize: packets beyond maxKeysBatchBytes leave in
// further calls, in order; a failed call counts each of its pushes and does
// not stop the next call.
func TestKeysBatchSplitBySize(t *testing.T) {
	h := newHarness(t, Config{}, false)
	h.fakes["c1"].err = errors.New("comet down")
	big := bytes.Repeat([]byte("x"), maxKeysBatchBytes/2+1)
	var msgs []bus.Message
	for i := range 5 {
		body := []byte("small")
		if i == 1 || i == 2 || i == 3 {
			body = big
		}
		m := pushmsg.Msg{Type: pushmsg.Keys, Operation: protocol.OpEvent, Seq: int32(i), Server: "c1", Keys: []string{"k"}, Body: body}
		msgs = append(msgs, bus.Message{Topic: bus.TopicPush, Key: "u", Value: m.Marshal()})
	}
	errsBefore := counterValue(metricPushErrors.WithLabelValues(typeKeys))
	if err := h.job.handle(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	c := h.fakes["c1"]
	c.mu.Lock()
	batches, got := slices.Clone(c.keyBatches), slices.Clone(c.keys)
	c.mu.Unlock()
	// [small big] [big] [big small]
	if !slices.Equal(batches, []int{2, 1, 2}) {
		t.Errorf("batches %v, want [2 1 2]", batches)
	}
	for i, kc := range got {
		if kc.p.Seq != int32(i) {
			t.Errorf("entry %d has seq %d", i, kc.p.Seq)
		}
	}
	if d := counterValue(metricPushErrors.WithLabelValues(typeKeys)) - errsBefore; d != 5 {
		t.Errorf("keys push errors grew by %v, want 5", d)
	}
}

func TestRoomOnlyToMembers(t *testing.T) {
	h := newHarness(t, Config{FlushInterval: time.Millisecond}, true)
	h.members("c1", map[string]int32{"r": 3})
	h.members("c2", map[string]int32{"other": 1})
	h.members("c3", nil)

	h.publish("r", roomMsg("r", 0))
	h.publish("r", roomMsg("r", 1)) // after the first one's flush completed
	waitFor(t, "both messages at c1", func() bool { return len(h.fakes["c1"].roomPackets(t, "r")) == 2 })
	for _, n := range []string{"c2", "c3"} {
		if _, rooms, _ := h.fakes[n].calls(); rooms != 0 {
			t.Fatalf("%s has no member in r but got %d PushRoom calls", n, rooms)
		}
	}

	// c3 gets its first member: the next push reaches it at once, without
	// waiting for a report.
	if err := h.reg.AddRoom(context.Background(), "c3", "r"); err != nil {
		t.Fatal(err)
	}
	h.publish("r", roomMsg("r", 2))
	waitFor(t, "c3's first push", func() bool { return len(h.fakes["c3"].roomPackets(t, "r")) == 1 })
	waitFor(t, "c1's third push", func() bool { return len(h.fakes["c1"].roomPackets(t, "r")) == 3 })
	got := h.fakes["c3"].roomPackets(t, "r")[0]
	if got.Seq != 2 || got.Op != 1001 || string(got.Body) != "m2" || got.Ver != 1 {
		t.Fatalf("c3 got %+v", got)
	}
	// A room without members anywhere costs no push.
	h.publish("empty", roomMsg("empty", 0))
	h.publish("r", roomMsg("r", 3))
	waitFor(t, "c1's fourth push", func() bool { return len(h.fakes["c1"].roomPackets(t, "r")) == 4 })
	for _, c := range h.fakes {
		if b := c.batches("empty"); len(b) != 0 {
			t.Fatalf("%s got a push for a room without members", c.name)
		}
	}
}

// A lone message leaves at once: with a one-hour interval it still arrives.
func TestRoomLoneMessageImmediate(t *testing.T) {
	h := newHarness(t, Config{FlushInterval: time.Hour}, true)
	h.members("c1", map[string]int32{"a": 1, "b": 1})
	h.publish("a", roomMsg("a", 0))
	h.publish("b", roomMsg("b", 0))
	waitFor(t, "lone message in room a", func() bool { return len(h.fakes["c1"].roomPackets(t, "a")) == 1 })
	waitFor(t, "lone message in room b", func() bool { return len(h.fakes["c1"].roomPackets(t, "b")) == 1 })
}

func TestRoomBurstBatching(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"defaults", Config{FlushInterval: time.Millisecond}},
		{"max_msgs_7", Config{FlushInterval: time.Millisecond, MaxBatchMsgs: 7}},
		{"max_bytes_200", Config{FlushInterval: time.Millisecond, MaxBatchBytes: 200}},
	}
	rooms := []string{"r0", "r1", "r2", "r3"}
	const n = 600
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg, false)
			h.members("c1", map[string]int32{"r0": 1, "r1": 1, "r2": 1, "r3": 1})
			h.members("c2", map[string]int32{"r1": 1, "r3": 1})
			// The burst is queued before the job consumes.
			for i := range n {
				for _, r := range rooms {
					h.publish(r, roomMsg(r, i))
				}
			}
			h.start()
			cfg := h.job.cfg
			check := func(c *fakeComet, room string) {
				waitFor(t, c.name+" "+room, func() bool { return len(c.roomPackets(t, room)) >= n })
				got := c.roomPackets(t, room)
				if len(got) != n {
					t.Fatalf("%s %s: %d packets, want %d", c.name, room, len(got), n)
				}
				for i, p := range got {
					if p.Seq != int32(i) || string(p.Body) != "m"+strconv.Itoa(i) || p.Op != 1001 {
						t.Fatalf("%s %s: packet %d is %+v: lost, duplicated or reordered", c.name, room, i, p)
					}
				}
				batches := c.batches(room)
				if len(batches) >= n {
					t.Fatalf("%s %s: %d PushRoom calls for %d messages: no batching", c.name, room, len(batches), n)
				}
				for _, b := range batches {
					count := 0
					_ = protocol.SplitBatch(b, func(protocol.Packet) error { count++; return nil })
					if count > cfg.MaxBatchMsgs || (count > 1 && len(b) > cfg.MaxBatchBytes) {
						t.Fatalf("%s %s: batch of %d packets, %d bytes exceeds limits", c.name, room, count, len(b))
					}
				}
				t.Logf("%s %s: %d messages in %d batches", c.name, room, n, len(batches))
			}
			for _, r := range rooms {
				check(h.fakes["c1"], r)
			}
			check(h.fakes["c2"], "r1")
			check(h.fakes["c2"], "r3")
			if b := h.fakes["c2"].batches("r0"); len(b) != 0 {
				t.Fatal("c2 got r0 without members")
			}
		})
	}
}

func TestBroadcast(t *testing.T) {
	h := newHarness(t, Config{}, true)
	h.publish("", pushmsg.Msg{Type: pushmsg.Broadcast, Operation: 2000, Speed: 100, Body: []byte("hello")})
	for _, c := range h.fakes {
		waitFor(t, "broadcast at "+c.name, func() bool { _, _, b := c.calls(); return b == 1 })
		c.mu.Lock()
		got := c.broadcasts[0]
		c.mu.Unlock()
		if got.speed != 100 || got.p.Op != 2000 || string(got.p.Body) != "hello" || got.p.Ver != 1 {
			t.Fatalf("%s: %+v", c.name, got)
		}
	}
	// A comet added later receives later broadcasts; a removed one does not.
	late := newFakeComet("c4")
	h.comets.Set("c4", late)
	h.comets.Remove("c1")
	h.publish("", pushmsg.Msg{Type: pushmsg.Broadcast, Operation: 2000, Body: []byte("again")})
	waitFor(t, "broadcast at c4", func() bool { _, _, b := late.calls(); return b == 1 })
	waitFor(t, "second broadcast at c2", func() bool { _, _, b := h.fakes["c2"].calls(); return b == 2 })
	if _, _, b := h.fakes["c1"].calls(); b != 1 {
		t.Fatalf("removed comet got %d broadcasts", b)
	}
}

func TestPushErrorsCountedAndSkipped(t *testing.T) {
	h := newHarness(t, Config{FlushInterval: time.Millisecond}, true)
	h.fakes["c1"].err = errors.New("comet down")
	h.members("c1", map[string]int32{"r": 1})
	h.members("c2", map[string]int32{"r": 1})
	before := counterValue(metricPushErrors.WithLabelValues(typeRoom))
	h.publish("r", roomMsg("r", 0))
	h.publish("r", roomMsg("r", 1))
	// The failing comet does not hold back the other one nor later messages.
	waitFor(t, "c2 gets both", func() bool { return len(h.fakes["c2"].roomPackets(t, "r")) == 2 })
	// Every failed call is counted (the two messages may share a batch).
	waitFor(t, "errors counted", func() bool {
		_, calls, _ := h.fakes["c1"].calls()
		return calls > 0 && counterValue(metricPushErrors.WithLabelValues(typeRoom)) == before+float64(calls)
	})
	if got := len(h.fakes["c1"].roomPackets(t, "r")); got != 2 {
		t.Fatalf("the failing comet was offered %d packets, want 2 (no retry)", got)
	}
}

func TestCorruptMessageDropped(t *testing.T) {
	h := newHarness(t, Config{}, true)
	before := counterValue(droppedCorrupt)
	if err := h.bus.Publish(context.Background(), bus.Message{Topic: bus.TopicPush, Key: "k", Value: []byte{0xff, 1, 2}}); err != nil {
		t.Fatal(err)
	}
	h.publish("k", pushmsg.Msg{Type: pushmsg.Keys, Operation: 1000, Server: "c1", Keys: []string{"x"}})
	waitFor(t, "message after the corrupt one", func() bool { k, _, _ := h.fakes["c1"].calls(); return k == 1 })
	if got := counterValue(droppedCorrupt); got != before+1 {
		t.Fatalf("corrupt drops %v, want %v", got, before+1)
	}
}

func pendingRoomMsgs(j *Job, room string) int {
	sh := j.rooms.shard(room)
	sh.mu.Lock()
	r := sh.m[room]
	sh.mu.Unlock()
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, b := range r.batches {
		n += b.n
	}
	return n
}

func TestShutdownDrains(t *testing.T) {
	h := newHarness(t, Config{FlushInterval: time.Hour}, true)
	h.members("c1", map[string]int32{"r": 1})
	h.publish("r", roomMsg("r", 0))
	waitFor(t, "first message", func() bool { return len(h.fakes["c1"].roomPackets(t, "r")) == 1 })
	// The second one waits for the hour-long interval...
	h.publish("r", roomMsg("r", 1))
	waitFor(t, "message pending", func() bool { return pendingRoomMsgs(h.job, "r") == 1 })
	// ...until Shutdown flushes it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.job.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got := h.fakes["c1"].roomPackets(t, "r")
	if len(got) != 2 || got[0].Seq != 0 || got[1].Seq != 1 {
		t.Fatalf("after Shutdown c1 has %+v", got)
	}
	// Everything is gone: no room state, and Start fails.
	if n := pendingRoomMsgs(h.job, "r"); n != 0 {
		t.Fatalf("%d messages pending after Shutdown", n)
	}
	if err := h.job.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Shutdown: %v", err)
	}
	if err := h.job.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// blockingComet blocks PushRoom until released or ctx ends.
type blockingComet struct {
	*fakeComet
	entered chan struct{}
	once    sync.Once
}

func (c *blockingComet) PushRoom(ctx context.Context, room string, batch []byte) error {
	c.once.Do(func() { close(c.entered) })
	<-ctx.Done()
	return ctx.Err()
}

func TestShutdownDeadlineCancelsPushes(t *testing.T) {
	h := newHarness(t, Config{PushTimeout: time.Hour}, true)
	bc := &blockingComet{fakeComet: newFakeComet("c1"), entered: make(chan struct{})}
	h.comets.Set("c1", bc)
	h.members("c1", map[string]int32{"r": 1})
	h.publish("r", roomMsg("r", 0))
	<-bc.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // already expired: Shutdown must cancel the stuck push
	if err := h.job.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
}

func TestNewValidation(t *testing.T) {
	b := bus.NewMemory(bus.MemoryConfig{})
	defer b.Close()
	deps := Deps{Bus: b, Sessions: session.NewMemory(session.MemoryConfig{}), Comets: NewStaticComets()}
	tests := []struct {
		name string
		cfg  Config
		deps Deps
		ok   bool
	}{
		{"zero config", Config{}, deps, true},
		{"default config", DefaultConfig(), deps, true},
		{"negative interval", Config{FlushInterval: -1}, deps, false},
		{"negative bytes", Config{MaxBatchBytes: -1}, deps, false},
		{"negative msgs", Config{MaxBatchMsgs: -1}, deps, false},
		{"negative timeout", Config{PushTimeout: -1}, deps, false},
		{"no bus", Config{}, Deps{Sessions: deps.Sessions, Comets: deps.Comets}, false},
		{"no sessions", Config{}, Deps{Bus: b, Comets: deps.Comets}, false},
		{"no comets", Config{}, Deps{Bus: b, Sessions: deps.Sessions}, false},
	}
	for _, tc := range tests {
		j, err := New(tc.cfg, tc.deps, nil)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
			continue
		}
		if err == nil {
			if j.cfg != DefaultConfig() && tc.cfg == (Config{}) {
				t.Errorf("%s: defaults not applied: %+v", tc.name, j.cfg)
			}
			_ = j.Close()
		}
	}
}

func TestStartTwice(t *testing.T) {
	h := newHarness(t, Config{}, true)
	if err := h.job.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
}

func TestStaticComets(t *testing.T) {
	s := NewStaticComets()
	a, b := newFakeComet("a"), newFakeComet("b")
	s.Set("a", a)
	s.Set("b", b)
	if c, ok := s.Comet("a"); !ok || c != a {
		t.Fatal("Comet(a)")
	}
	all := s.All()
	delete(all, "a") // a copy
	if _, ok := s.Comet("a"); !ok || len(s.All()) != 2 {
		t.Fatal("All is not a copy")
	}
	s.Remove("a")
	if _, ok := s.Comet("a"); ok || len(s.All()) != 1 {
		t.Fatal("Remove")
	}
	s.Set("b", a) // replace
	if c, _ := s.Comet("b"); c != a {
		t.Fatal("Set does not replace")
	}
}

// benchHandle measures the room path: decode, batch, flush to two comets.
func benchHandle(b *testing.B, rooms, perCall int) {
	reg := session.NewMemory(session.MemoryConfig{})
	comets := NewStaticComets()
	roomSet := make(map[string]int32, rooms)
	names := make([]string, rooms)
	for i := range names {
		names[i] = "room" + strconv.Itoa(i)
		roomSet[names[i]] = 1
	}
	for _, n := range []string{"c1", "c2"} {
		comets.Set(n, nopComet{})
		if err := reg.SetServer(context.Background(), session.ServerInfo{Name: n}, roomSet); err != nil {
			b.Fatal(err)
		}
	}
	mb := bus.NewMemory(bus.MemoryConfig{})
	defer mb.Close()
	j, err := New(Config{FlushInterval: time.Nanosecond}, Deps{Bus: mb, Sessions: reg, Comets: comets}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	body := bytes.Repeat([]byte("x"), 100)
	msgs := make([]bus.Message, perCall)
	for i := range msgs {
		m := pushmsg.Msg{Type: pushmsg.Room, Operation: 1001, Room: names[i%rooms], Body: body}
		msgs[i] = bus.Message{Topic: bus.TopicPush, Key: m.Room, Value: m.Marshal()}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := j.handle(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perCall)/b.Elapsed().Seconds(), "msgs/s")
}

type nopComet struct{}

func (nopComet) PushKeys(context.Context, []string, protocol.Packet) error { return nil }
func (nopComet) PushKeysBatch(context.Context, [][]string, []protocol.Packet) error {
	return nil
}
func (nopComet) PushRoom(context.Context, string, []byte) error          { return nil }
func (nopComet) Broadcast(context.Context, protocol.Packet, int32) error { return nil }

func BenchmarkRoomBatch(b *testing.B) {
	for _, bc := range []struct{ rooms, perCall int }{{1, 1}, {1, 256}, {16, 256}, {256, 256}} {
		b.Run(fmt.Sprintf("rooms=%d/batch=%d", bc.rooms, bc.perCall), func(b *testing.B) {
			benchHandle(b, bc.rooms, bc.perCall)
		})
	}
}

func BenchmarkRoomAppend(b *testing.B) {
	r := &roomState{}
	p := protocol.Packet{Ver: 1, Op: 1001, Body: bytes.Repeat([]byte("x"), 100)}
	b.ReportAllocs()
	for b.Loop() {
		r.append(p, p.Size(), 32<<10, 256)
		if len(r.batches) > 1 {
			r.batches = r.batches[:0]
		}
	}
}

// FuzzHandle feeds arbitrary bus values to the handler: it must neither
// panic nor fail, and whatever it pushes to a room must split cleanly.
func FuzzHandle(f *testing.F) {
	for _, m := range []pushmsg.Msg{
		roomMsg("r", 1),
		{Type: pushmsg.Keys, Operation: 1000, Server: "c1", Keys: []string{"a", "b"}, Body: []byte("x")},
		{Type: pushmsg.Broadcast, Operation: 4, Speed: 10},
		{Type: pushmsg.Keys, Server: "nowhere", Keys: []string{"k"}},
	} {
		f.Add(m.Marshal())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 9, 0, 0})
	reg := session.NewMemory(session.MemoryConfig{})
	comets := NewStaticComets()
	c1 := newFakeComet("c1")
	comets.Set("c1", c1)
	if err := reg.SetServer(context.Background(), session.ServerInfo{Name: "c1"}, map[string]int32{"r": 1}); err != nil {
		f.Fatal(err)
	}
	mb := bus.NewMemory(bus.MemoryConfig{})
	defer mb.Close()
	j, err := New(Config{FlushInterval: time.Nanosecond}, Deps{Bus: mb, Sessions: reg, Comets: comets}, quietLog())
	if err != nil {
		f.Fatal(err)
	}
	defer j.Close()
	f.Fuzz(func(t *testing.T, value []byte) {
		if err := j.handle(context.Background(), []bus.Message{{Topic: bus.TopicPush, Value: value}}); err != nil {
			t.Fatalf("handle: %v", err)
		}
		c1.mu.Lock()
		batches := c1.rooms["r"]
		c1.rooms["r"] = nil
		c1.mu.Unlock()
		for _, b := range batches {
			if err := protocol.SplitBatch(b, func(protocol.Packet) error { return nil }); err != nil {
				t.Fatalf("bad batch: %v", err)
			}
		}
	})
}

// pacedComet records whether each Broadcast's context has a deadline, and
// blocks paced ones until released or cancelled.
type pacedComet struct {
	*fakeComet
	release chan struct{}
	entered chan struct{} // a paced call began
	calls   chan pacedCall
}

type pacedCall struct {
	speed       int32
	hasDeadline bool
	err         error // the paced call's outcome
}

func (c *pacedComet) Broadcast(ctx context.Context, p protocol.Packet, speed int32) error {
	_, dl := ctx.Deadline()
	var err error
	if speed > 0 {
		c.entered <- struct{}{}
		select {
		case <-c.release:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	c.calls <- pacedCall{speed: speed, hasDeadline: dl, err: err}
	return err
}

// TestPacedBroadcastNotCutByPushTimeout: a paced broadcast lasts
// conns/speed seconds by design; PushTimeout must not cut it (it bounds the
// unpaced ones), the job's lifetime does.
func TestPacedBroadcastNotCutByPushTimeout(t *testing.T) {
	h := newHarness(t, Config{PushTimeout: time.Hour}, true)
	for _, n := range []string{"c2", "c3"} {
		h.comets.Remove(n)
	}
	pc := &pacedComet{fakeComet: newFakeComet("c1"), release: make(chan struct{}), entered: make(chan struct{}, 4), calls: make(chan pacedCall, 4)}
	h.comets.Set("c1", pc)

	h.publish("", pushmsg.Msg{Type: pushmsg.Broadcast, Operation: 2000, Body: []byte("fast")})
	if c := <-pc.calls; c.speed != 0 || !c.hasDeadline {
		t.Fatalf("unpaced broadcast: %+v, want a PushTimeout deadline", c)
	}
	h.publish("", pushmsg.Msg{Type: pushmsg.Broadcast, Operation: 2000, Speed: 10, Body: []byte("paced")})
	<-pc.entered
	close(pc.release)
	if c := <-pc.calls; c.speed != 10 || c.hasDeadline || c.err != nil {
		t.Fatalf("paced broadcast: %+v, want no deadline and success", c)
	}

	// A forced Shutdown still stops a paced broadcast.
	pc.release = make(chan struct{})
	h.publish("", pushmsg.Msg{Type: pushmsg.Broadcast, Operation: 2000, Speed: 1, Body: []byte("long")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	<-pc.entered
	go func() { done <- h.job.Shutdown(ctx) }()
	cancel()
	if c := <-pc.calls; !errors.Is(c.err, context.Canceled) {
		t.Fatalf("paced broadcast at a forced shutdown: %+v, want cancelled", c)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v", err)
	}
}

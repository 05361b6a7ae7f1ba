package comet

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goimdev/goim/protocol"
)

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"no listener", func(c *Config) { c.TCPAddr, c.WSAddr = "", "" }, false},
		{"negative body", func(c *Config) { c.MaxBody = -1 }, false},
		{"huge body", func(c *Config) { c.MaxBody = 1 << 30 }, false},
		{"tiny pre-auth", func(c *Config) { c.MaxPreAuthBytes = 3 }, false},
		{"negative per ip", func(c *Config) { c.MaxConnsPerIP = -1 }, false},
		{"negative heartbeat", func(c *Config) { c.Heartbeat = -time.Second }, false},
		{"tcp only", func(c *Config) { c.WSAddr = "" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.mod(&cfg)
			s, err := New(cfg, &fakeLogic{}, quietLog())
			if (err == nil) != tt.ok {
				t.Fatalf("New err = %v, want ok=%v", err, tt.ok)
			}
			if err == nil {
				if got := s.Config(); got.MaxBody <= 0 || got.Buckets != 32 || got.Heartbeat != 30*time.Second {
					t.Fatalf("defaults not applied: %+v", got)
				}
				if s.TCPAddr() != nil {
					t.Fatal("New bound a listener")
				}
			}
		})
	}
	if _, err := New(testConfig(), nil, nil); err == nil {
		t.Fatal("nil logic accepted")
	}
}

func TestAuthHeartbeatAndRoomCount(t *testing.T) {
	logic := &fakeLogic{online: map[string]int32{"live://1": 42}}
	s := startServer(t, testConfig(), logic)
	waitFor(t, "first RenewOnline", func() bool { return s.online.Load() != nil })
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, s, tr)
			rep := c.auth("uid:7", "dev-"+tr, "")
			var body map[string]any
			if err := json.Unmarshal(rep.Body, &body); err != nil || body["key"] != "dev-"+tr {
				t.Fatalf("auth reply body %q", rep.Body)
			}
			if n := c.heartbeat(); n != 0 {
				t.Fatalf("heartbeat count without a room = %d", n)
			}
			// All-comet count from RenewOnline.
			seq := c.send(protocol.OpChangeRoom, []byte("live://1"))
			if p := c.expect(protocol.OpChangeRoomReply); p.Seq != seq || string(p.Body) != "live://1" {
				t.Fatalf("op 13 %d %q", p.Seq, p.Body)
			}
			if n := c.heartbeat(); n != 42 {
				t.Fatalf("heartbeat count = %d, want 42 (all comets)", n)
			}
			// A room unknown to RenewOnline falls back to the local count.
			c.send(protocol.OpChangeRoom, []byte("live://local-"+tr))
			c.expect(protocol.OpChangeRoomReply)
			if n := c.heartbeat(); n != 1 {
				t.Fatalf("heartbeat count = %d, want 1 (local)", n)
			}
		})
	}
	logic.mu.Lock()
	defer logic.mu.Unlock()
	if len(logic.connects) != 2 || logic.connects[1].Transport != transportWS || logic.connects[0].Server != "comet-test" {
		t.Fatalf("connect requests %+v", logic.connects)
	}
	if logic.heartbeats != 0 {
		t.Fatalf("Logic.Heartbeat called %d times within one interval", logic.heartbeats)
	}
}

func TestWSQueryToken(t *testing.T) {
	logic := &fakeLogic{}
	s := startServer(t, testConfig(), logic)
	c := dialWS(t, s, "/sub?token=uid:9&x=1")
	body, _ := json.Marshal(authBody{Key: "q"})
	c.send(protocol.OpAuth, body)
	p := c.expect(protocol.OpAuthReply)
	if !bytes.Contains(p.Body, []byte(`"user_id":9`)) {
		t.Fatalf("auth reply %q", p.Body)
	}
	logic.mu.Lock()
	defer logic.mu.Unlock()
	if logic.connects[0].QueryToken != "uid:9" {
		t.Fatalf("query token %q", logic.connects[0].QueryToken)
	}
}

func batchOf(ps ...protocol.Packet) []byte {
	var b []byte
	for _, p := range ps {
		b = protocol.Append(b, p)
	}
	return b
}

func TestPushRoomFraming(t *testing.T) {
	logic := &fakeLogic{}
	s := startServer(t, testConfig(), logic)
	tcp := dialTCP(t, s)
	tcp.auth("uid:1", "a", "live://9")
	ws := dialWS(t, s, "/sub")
	ws.auth("uid:2", "b", "live://9")
	if got := logic.joinedRooms(); !slices.Equal(got, []string{"live://9"}) {
		t.Fatalf("RoomJoined calls %v, want one", got)
	}
	if got := s.RoomCounts(); got["live://9"] != 2 {
		t.Fatalf("room counts %v", got)
	}
	p1 := protocol.Packet{Ver: 1, Op: 1000, Body: []byte("one")}
	p2 := protocol.Packet{Ver: 1, Op: 1001, Body: []byte("two")}
	batch := batchOf(p1, p2)
	if err := s.PushRoom(context.Background(), "live://9", batch); err != nil {
		t.Fatal(err)
	}
	clear(batch) // the server must have copied it
	// TCP: the inner packets as plain packets.
	for _, want := range []protocol.Packet{p1, p2} {
		p := tcp.expect(want.Op)
		if string(p.Body) != string(want.Body) {
			t.Fatalf("tcp got %q want %q", p.Body, want.Body)
		}
	}
	// WebSocket: one frame holding the Op 9 packet.
	op, payload, err := ws.readFrame()
	if err != nil || op != 0x2 {
		t.Fatalf("ws frame op %d err %v", op, err)
	}
	p, n, err := protocol.Decode(payload, 0)
	if err != nil || n != len(payload) || p.Op != protocol.OpRaw {
		t.Fatalf("ws frame: op %d, %d of %d bytes, err %v", p.Op, n, len(payload), err)
	}
	var inner []string
	_ = protocol.SplitBatch(p.Body, func(q protocol.Packet) error {
		inner = append(inner, string(q.Body))
		return nil
	})
	if !slices.Equal(inner, []string{"one", "two"}) {
		t.Fatalf("ws batch holds %q", inner)
	}
	// Bad batches are refused; empty rooms are fine.
	if err := s.PushRoom(context.Background(), "live://9", []byte{1, 2, 3}); err == nil {
		t.Fatal("truncated batch accepted")
	}
	if err := s.PushRoom(context.Background(), "live://none", batchOf(p1)); err != nil {
		t.Fatal(err)
	}
}

func TestChangeRoom(t *testing.T) {
	logic := &fakeLogic{joinGate: make(chan struct{})}
	s := startServer(t, testConfig(), logic)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			room := "live://cr-" + tr
			c := dial(t, s, tr)
			c.auth("uid:3", "", "")
			seq := c.send(protocol.OpChangeRoom, []byte(room))
			// RoomJoined is in flight: no Op 13 may come before it returns.
			waitFor(t, "RoomJoined in flight", func() bool { return s.localOnline(room) == 1 })
			c2 := dial(t, s, tr)
			c2.auth("uid:4", "", "")
			seq2 := c2.send(protocol.OpChangeRoom, []byte(room))
			_ = c.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if b, err := c.br.ReadByte(); err == nil {
				t.Fatalf("reply byte %x before RoomJoined returned", b)
			}
			c.br.Reset(c.c)
			logic.joinGate <- struct{}{}
			if p := c.expect(protocol.OpChangeRoomReply); p.Seq != seq || string(p.Body) != room {
				t.Fatalf("op 13 seq %d body %q", p.Seq, p.Body)
			}
			if p := c2.expect(protocol.OpChangeRoomReply); p.Seq != seq2 {
				t.Fatalf("second joiner op 13 seq %d", p.Seq)
			}
			if got := logic.joinedRooms(); got[len(got)-1] != room || slices.Index(got, room) != len(got)-1 {
				t.Fatalf("RoomJoined calls %v: want one for %s", got, room)
			}
			if err := s.PushRoom(context.Background(), room, batchOf(protocol.Packet{Ver: 1, Op: 5000, Body: []byte("x")})); err != nil {
				t.Fatal(err)
			}
			for _, cl := range []*client{c, c2} {
				if tr == transportTCP {
					cl.expect(5000)
				} else {
					cl.expect(protocol.OpRaw)
				}
			}
			// Empty body leaves the room.
			for _, cl := range []*client{c, c2} {
				seq := cl.send(protocol.OpChangeRoom, nil)
				if p := cl.expect(protocol.OpChangeRoomReply); p.Seq != seq || len(p.Body) != 0 {
					t.Fatalf("leave reply %d %q", p.Seq, p.Body)
				}
			}
			if _, ok := s.RoomCounts()[room]; ok {
				t.Fatalf("room %s still counted: %v", room, s.RoomCounts())
			}
		})
	}
	// A room key that protocol.ValidRoom refuses (the rule of Op 7's
	// room_id and of the push API too) is a protocol error.
	for _, bad := range [][]byte{bytes.Repeat([]byte("r"), protocol.MaxRoomLen+1), []byte("live://a,b"), []byte("live://a b")} {
		c := dialTCP(t, s)
		c.auth("uid:5", "", "")
		c.send(protocol.OpChangeRoom, bad)
		c.expectDisconnect(protocol.CodeProtocolError)
	}
	c := dialTCP(t, s)
	c.auth("uid:5", "", "")
	longest := bytes.Repeat([]byte("r"), protocol.MaxRoomLen)
	c.send(protocol.OpChangeRoom, longest)
	logic.joinGate <- struct{}{} // the room's first member: RoomJoined waits for the gate
	if p := c.expect(protocol.OpChangeRoomReply); !bytes.Equal(p.Body, longest) {
		t.Fatalf("op 13 body %q", p.Body)
	}
}

func TestSubUnsubAccepts(t *testing.T) {
	s := startServer(t, testConfig(), &fakeLogic{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			key := "sub-" + tr
			c := dial(t, s, tr)
			c.auth("uid:8", key, "", 1005)
			ctx := context.Background()
			push := func(op int32) {
				t.Helper()
				if err := s.PushKeys(ctx, []string{key, "nobody"}, protocol.Packet{Ver: 1, Op: op, Body: []byte(strconv.Itoa(int(op)))}); err != nil {
					t.Fatal(err)
				}
			}
			// expectOnly: of the pushes made, only want arrive before the
			// next heartbeat reply (pushes are queued before PushKeys returns).
			expectOnly := func(want ...int32) {
				t.Helper()
				c.send(protocol.OpHeartbeat, nil)
				var got []int32
				for {
					p, err := c.read()
					if err != nil {
						t.Fatal(err)
					}
					if p.Op == protocol.OpHeartbeatReply {
						break
					}
					got = append(got, p.Op)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("got ops %v, want %v", got, want)
				}
			}
			seq := c.send(protocol.OpSub, []byte("1002, 1001,x,1001"))
			if p := c.expect(protocol.OpSubReply); p.Seq != seq || string(p.Body) != "1001,1002" {
				t.Fatalf("op 15 %d %q", p.Seq, p.Body)
			}
			push(1001)
			push(1003)
			push(1005) // from AuthReq accepts
			push(protocol.OpEvent)
			expectOnly(1001, 1005, protocol.OpEvent)

			seq = c.send(protocol.OpUnsub, []byte("1001"))
			if p := c.expect(protocol.OpUnsubReply); p.Seq != seq || string(p.Body) != "1001" {
				t.Fatalf("op 17 %d %q", p.Seq, p.Body)
			}
			push(1001)
			push(1002)
			expectOnly(1002)

			if err := s.Broadcast(ctx, protocol.Packet{Ver: 1, Op: 1002, Body: []byte("all")}, 0); err != nil {
				t.Fatal(err)
			}
			if err := s.Broadcast(ctx, protocol.Packet{Ver: 1, Op: 1001, Body: []byte("all")}, 0); err != nil {
				t.Fatal(err)
			}
			expectOnly(1002)
			c.c.Close()
			waitFor(t, "close", func() bool { return s.Stats().Conns == 0 })
		})
	}
}

func TestBroadcastSpeed(t *testing.T) {
	s := startServer(t, testConfig(), &fakeLogic{})
	var cs []*client
	for i := range 6 {
		c := dialTCP(t, s)
		c.auth("uid:"+strconv.Itoa(i+1), "", "")
		cs = append(cs, c)
	}
	if err := s.Broadcast(context.Background(), protocol.Packet{Ver: 1, Op: protocol.OpEvent, Body: []byte("b")}, 1000); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		c.expect(protocol.OpEvent)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Broadcast(ctx, protocol.Packet{Ver: 1, Op: protocol.OpEvent}, 1); err == nil {
		t.Fatal("cancelled broadcast returned nil")
	}
}

func TestPipelined(t *testing.T) {
	s := startServer(t, testConfig(), &fakeLogic{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, s, tr)
			// Auth and three requests in one write.
			auth, _ := json.Marshal(authBody{Token: "uid:1"})
			var buf []byte
			ops := []int32{protocol.OpAuth, protocol.OpHeartbeat, protocol.OpSendMsg, protocol.OpSub, protocol.OpHeartbeat}
			for i, op := range ops {
				body := []byte("1001")
				if op == protocol.OpAuth {
					body = auth
				}
				buf = append(buf, c.packetBytes(protocol.Packet{Ver: 3, Op: op, Seq: int32(i + 1), Body: body})...)
			}
			c.write(buf)
			want := []int32{protocol.OpAuthReply, protocol.OpHeartbeatReply, protocol.OpSendMsgReply, protocol.OpSubReply, protocol.OpHeartbeatReply}
			for i, op := range want {
				p := c.expect(op)
				if p.Seq != int32(i+1) || p.Ver != 3 {
					t.Fatalf("reply %d: seq %d ver %d", i, p.Seq, p.Ver)
				}
			}
		})
	}
}

func TestReceive(t *testing.T) {
	s := startServer(t, testConfig(), &fakeLogic{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, s, tr)
			c.auth("uid:1", "", "")
			// Unknown op: answered by logic, connection stays.
			seq := c.send(77, []byte("?"))
			p := c.expect(77)
			if p.Seq != seq || !bytes.Contains(p.Body, []byte("unknown_op")) {
				t.Fatalf("unknown op reply %d %q", p.Seq, p.Body)
			}
			// Logic error: reply op+1 (or same op) with code internal.
			seq = c.send(99, nil)
			if p := c.expect(99); p.Seq != seq || !bytes.Contains(p.Body, []byte(`"code":"internal"`)) {
				t.Fatalf("error reply %d %q", p.Seq, p.Body)
			}
			// No reply: nothing is written; the next reply is the heartbeat's.
			c.send(protocol.OpTyping, []byte("{}"))
			c.heartbeat()
			// A CloseError from logic closes with its code.
			c.send(98, nil)
			c.expectDisconnect(protocol.CodeKicked)
		})
	}
}

func TestRenewOnlineReport(t *testing.T) {
	logic := &fakeLogic{}
	cfg := testConfig()
	cfg.RenewInterval = 20 * time.Millisecond
	cfg.AdvertiseTCP = "public:3101"
	s := startServer(t, cfg, logic)
	c := dialTCP(t, s)
	c.auth("uid:1", "", "live://r")
	w := dialWS(t, s, "/sub")
	w.auth("uid:2", "", "live://r")
	waitFor(t, "report with both connections", func() bool {
		logic.mu.Lock()
		defer logic.mu.Unlock()
		if len(logic.reports) == 0 {
			return false
		}
		r := logic.reports[len(logic.reports)-1]
		return r.Conns == 2
	})
	logic.mu.Lock()
	r := logic.reports[len(logic.reports)-1]
	logic.mu.Unlock()
	if r.IPs != 1 || r.Rooms["live://r"] != 2 || r.TCPAddr != "public:3101" || r.WSAddr != s.WSAddr().String() || r.Server != "comet-test" {
		t.Fatalf("report %+v", r)
	}
	st := s.Stats()
	if st.Conns != 2 || st.TCP != 1 || st.WS != 1 || st.Rooms != 1 || st.IPs != 1 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestShutdownDrains(t *testing.T) {
	logic := &fakeLogic{}
	cfg := testConfig()
	cfg.DrainWindow = 200 * time.Millisecond
	s, err := New(cfg, logic, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	var cs []*client
	for i := range 6 {
		tr := transports[i%2]
		c := dial(t, s, tr)
		c.auth("uid:"+strconv.Itoa(i+1), "drain-"+strconv.Itoa(i), "live://d")
		cs = append(cs, c)
	}
	pending := dialTCP(t, s) // not authenticated
	cs = append(cs, pending)
	waitFor(t, "pending conn accepted", func() bool { return s.Stats().Pending == 1 })

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	for i, c := range cs {
		d := c.expectDisconnect(protocol.CodeServerDraining)
		if d.ReconnectAfterMs == nil || *d.ReconnectAfterMs < 0 || *d.ReconnectAfterMs >= 200 {
			t.Fatalf("client %d: reconnect_after_ms %v", i, d.ReconnectAfterMs)
		}
		if !slices.Equal(d.Addrs, cfg.DrainAddrs) {
			t.Fatalf("client %d: addrs %v", i, d.Addrs)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if st := s.Stats(); st.TCP+st.WS != 0 || st.Conns != 0 || !st.Draining {
		t.Fatalf("stats after shutdown %+v", st)
	}
	if got := logic.disconnected(); len(got) != 6 {
		t.Fatalf("Disconnect calls %v, want 6", got)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}

func TestDrainingRefusesNewcomers(t *testing.T) {
	s := startServer(t, testConfig(), &fakeLogic{})
	s.draining.Store(true) // as Shutdown does first
	for _, tr := range transports {
		c := dial(t, s, tr)
		d := c.expectDisconnect(protocol.CodeServerDraining)
		if d.ReconnectAfterMs == nil || len(d.Addrs) != 1 {
			t.Fatalf("%s: op 6 %+v", tr, d)
		}
	}
	s.draining.Store(false)
	checkServes(t, s)
}

// TestAuthReplyFirst: a push that reaches the connection while its auth is
// still running (here: RoomJoined blocks) is written after Op 8.
func TestAuthReplyFirst(t *testing.T) {
	logic := &fakeLogic{joinGate: make(chan struct{})}
	s := startServer(t, testConfig(), logic)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			key := "first-" + tr
			c := dial(t, s, tr)
			body, _ := json.Marshal(authBody{Token: "uid:1", Key: key, Room: "live://first-" + tr})
			c.send(protocol.OpAuth, body)
			waitFor(t, "registered", func() bool {
				b := s.bucket(key)
				b.mu.RLock()
				defer b.mu.RUnlock()
				return b.chs[key] != nil
			})
			if err := s.PushKeys(context.Background(), []string{key}, protocol.Packet{Ver: 1, Op: protocol.OpEvent, Body: []byte("early")}); err != nil {
				t.Fatal(err)
			}
			logic.joinGate <- struct{}{}
			c.expect(protocol.OpAuthReply)
			if p := c.expect(protocol.OpEvent); string(p.Body) != "early" {
				t.Fatalf("push body %q", p.Body)
			}
		})
	}
}

func TestLogicHeartbeatOverride(t *testing.T) {
	cfg := testConfig()
	cfg.Heartbeat = time.Minute
	s := startServer(t, cfg, &fakeLogic{heartbeat: 50 * time.Millisecond})
	c := dialTCP(t, s)
	c.auth("uid:1", "", "")
	c.expectDisconnect(protocol.CodeIdleTimeout)
}

// TestWSPipelinedUpgrade: upgrade request, auth and heartbeat in one write
// are answered in order (101 first).
func TestWSPipelinedUpgrade(t *testing.T) {
	s := startServer(t, testConfig(), &fakeLogic{})
	conn, err := net.Dial("tcp", s.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &client{t: t, c: conn, br: newReader(conn), ws: true}
	auth, _ := json.Marshal(authBody{Token: "uid:1"})
	req := "GET /sub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	b := []byte(req)
	b = append(b, c.packetBytes(protocol.Packet{Ver: 1, Op: protocol.OpAuth, Seq: 1, Body: auth})...)
	b = append(b, c.packetBytes(protocol.Packet{Ver: 1, Op: protocol.OpHeartbeat, Seq: 2})...)
	c.write(b)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.br.ReadString('\n')
	if err != nil || !strings.Contains(line, " 101 ") {
		t.Fatalf("status line %q: %v", line, err)
	}
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	if p := c.expect(protocol.OpAuthReply); p.Seq != 1 {
		t.Fatalf("auth seq %d", p.Seq)
	}
	if p := c.expect(protocol.OpHeartbeatReply); p.Seq != 2 {
		t.Fatalf("heartbeat seq %d", p.Seq)
	}
}

// SetDrainAddrs (a cluster comet following its peers) replaces the
// configured addresses: TCP clients are sent the peers' TCP addresses and
// WebSocket clients their WebSocket addresses.
func TestSetDrainAddrsPerTransport(t *testing.T) {
	cfg := testConfig()
	s := startServer(t, cfg, &fakeLogic{})
	tcpAddrs, wsAddrs := []string{"10.0.0.7:3101", "10.0.0.8:3101"}, []string{"10.0.0.7:3102"}
	s.SetDrainAddrs(tcpAddrs, wsAddrs)
	want := map[string][]string{"tcp": tcpAddrs, "ws": wsAddrs}
	var cs []*client
	for i, tr := range transports {
		c := dial(t, s, tr)
		c.auth("uid:"+strconv.Itoa(i+1), "peers-"+tr, "")
		cs = append(cs, c)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	for i, c := range cs {
		d := c.expectDisconnect(protocol.CodeServerDraining)
		if tr := transports[i]; !slices.Equal(d.Addrs, want[tr]) {
			t.Fatalf("%s client: addrs %v, want %v", tr, d.Addrs, want[tr])
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

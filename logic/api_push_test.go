package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/protocol"
)

func (e *env) addSession(t *testing.T, uid int64, key, server string) {
	t.Helper()
	if err := e.reg.Add(context.Background(), session.Session{UserID: uid, Key: key, Server: server, Platform: "web"}); err != nil {
		t.Fatal(err)
	}
}

func wantGoimOK(t *testing.T, what string, st int, m map[string]any) {
	t.Helper()
	if st != http.StatusOK || m["code"] != json.Number("0") || m["message"] != "" {
		t.Fatalf("%s: %d %v, want 200 {code:0, message:\"\"}", what, st, m)
	}
}

func TestPushKeys(t *testing.T) {
	e := newEnv(t)
	e.addSession(t, 1, "k1", "comet-a")
	e.addSession(t, 1, "k2", "comet-b")
	e.addSession(t, 2, "k3", "comet-a")
	st, m := e.do(t, "POST", "/goim/push/keys?operation=1001&keys=k3,k1&keys=k2,%20unknown,,k1", "hello")
	wantGoimOK(t, "push keys", st, m)
	data := m["data"].(map[string]any)
	if num(t, data["keys"]) != 3 || num(t, data["servers"]) != 2 {
		t.Fatalf("data = %v", data)
	}
	msgs, keys := e.bus.take(t)
	want := []pushmsg.Msg{
		{Type: pushmsg.Keys, Operation: 1001, Server: "comet-a", Keys: []string{"k1", "k3"}, Body: []byte("hello")},
		{Type: pushmsg.Keys, Operation: 1001, Server: "comet-b", Keys: []string{"k2"}, Body: []byte("hello")},
	}
	assertMsgs(t, msgs, want)
	if !slices.Equal(keys, []string{"comet-a", "comet-b"}) {
		t.Fatalf("bus keys %v, want the servers", keys)
	}
	// Nobody online: nothing published, still ok.
	st, m = e.do(t, "POST", "/goim/push/keys?operation=1001&keys=gone", "x")
	wantGoimOK(t, "push to offline key", st, m)
	if msgs, _ := e.bus.take(t); len(msgs) != 0 {
		t.Fatalf("published %v for an offline key", msgs)
	}
}

func assertMsgs(t *testing.T, got, want []pushmsg.Msg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("published %d messages %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Operation != w.Operation || g.Server != w.Server || g.Room != w.Room ||
			g.Speed != w.Speed || g.Seq != w.Seq || !slices.Equal(g.Keys, w.Keys) || !bytes.Equal(g.Body, w.Body) {
			t.Fatalf("message %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestPushMids(t *testing.T) {
	e := newEnv(t)
	e.addSession(t, 10, "a1", "comet-a")
	e.addSession(t, 10, "a2", "comet-b")
	e.addSession(t, 11, "b1", "comet-b")
	e.addSession(t, 12, "c1", "comet-c")
	st, m := e.do(t, "POST", "/goim/push/mids?operation=2000&mids=11,10,99,10", []byte{0, 1, 2})
	wantGoimOK(t, "push mids", st, m)
	msgs, keys := e.bus.take(t)
	assertMsgs(t, msgs, []pushmsg.Msg{
		{Type: pushmsg.Keys, Operation: 2000, Server: "comet-a", Keys: []string{"a1"}, Body: []byte{0, 1, 2}},
		{Type: pushmsg.Keys, Operation: 2000, Server: "comet-b", Keys: []string{"a2", "b1"}, Body: []byte{0, 1, 2}},
	})
	if !slices.Equal(keys, []string{"comet-a", "comet-b"}) {
		t.Fatalf("bus keys %v", keys)
	}
	data := m["data"].(map[string]any)
	if num(t, data["keys"]) != 3 || num(t, data["servers"]) != 2 {
		t.Fatalf("data = %v", data)
	}
}

func TestPushRoomAndAll(t *testing.T) {
	e := newEnv(t)
	st, m := e.do(t, "POST", "/goim/push/room?operation=1000&type=live&room=1000", "room msg")
	wantGoimOK(t, "push room", st, m)
	msgs, keys := e.bus.take(t)
	assertMsgs(t, msgs, []pushmsg.Msg{{Type: pushmsg.Room, Operation: 1000, Room: "live://1000", Body: []byte("room msg")}})
	if !slices.Equal(keys, []string{"live://1000"}) {
		t.Fatalf("bus keys %v", keys)
	}

	st, m = e.do(t, "POST", "/goim/push/all?operation=1002&speed=500", "all msg")
	wantGoimOK(t, "push all", st, m)
	msgs, keys = e.bus.take(t)
	assertMsgs(t, msgs, []pushmsg.Msg{{Type: pushmsg.Broadcast, Operation: 1002, Speed: 500, Body: []byte("all msg")}})
	if !slices.Equal(keys, []string{broadcastKey}) {
		t.Fatalf("bus keys %v", keys)
	}
	st, m = e.do(t, "POST", "/goim/push/all?operation=1007", "")
	wantGoimOK(t, "push all, no speed", st, m)
	msgs, _ = e.bus.take(t)
	assertMsgs(t, msgs, []pushmsg.Msg{{Type: pushmsg.Broadcast, Operation: 1007}})
	// Protocol ops cannot be pushed: Op 6 would close clients, Op 9 and
	// Op 22 would be parsed as batches and events.
	for _, op := range []string{"-7", "6", "9", "22", "999"} {
		st, m = e.do(t, "POST", "/goim/push/all?operation="+op, "")
		if st != http.StatusBadRequest || m["code"] != protocol.CodeBadRequest {
			t.Fatalf("push all operation=%s: %d %v, want 400 bad_request", op, st, m)
		}
	}
}

// Without an admin key, a request forwarded by a local reverse proxy is not
// a loopback client.
func TestPushRefusesProxied(t *testing.T) {
	e := newEnv(t)
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"} {
		req := httptest.NewRequest("POST", "/goim/push/all?operation=1000", nil)
		req.RemoteAddr = "127.0.0.1:5555"
		req.Header.Set(h, "203.0.113.9")
		rec := httptest.NewRecorder()
		e.svc.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403", h, rec.Code)
		}
	}
}

// The published messages reach a bus consumer intact.
func TestPushReachesConsumer(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan pushmsg.Msg, 4)
	err := e.bus.Subscribe(ctx, bus.TopicPush, "test", func(_ context.Context, msgs []bus.Message) error {
		for _, m := range msgs {
			var pm pushmsg.Msg
			if err := pm.Unmarshal(m.Value); err != nil {
				t.Error(err)
			}
			pm.Body = slices.Clone(pm.Body)
			got <- pm
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, m := e.do(t, "POST", "/goim/push/room?operation=1000&type=chat&room=7", "hi")
	wantGoimOK(t, "push room", st, m)
	select {
	case pm := <-got:
		assertMsgs(t, []pushmsg.Msg{pm}, []pushmsg.Msg{{Type: pushmsg.Room, Operation: 1000, Room: "chat://7", Body: []byte("hi")}})
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer got nothing")
	}
}

func TestPushValidation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxPushTargets = 3; c.MaxRequestBody = 16 })
	tests := []struct {
		name, path string
		body       string
		status     int
		code       string
	}{
		{"keys: no operation", "/goim/push/keys?keys=a", "", 400, "bad_request"},
		{"keys: bad operation", "/goim/push/keys?operation=x&keys=a", "", 400, "bad_request"},
		{"keys: operation overflow", "/goim/push/keys?operation=2147483648&keys=a", "", 400, "bad_request"},
		{"keys: no keys", "/goim/push/keys?operation=1000", "", 400, "bad_request"},
		{"keys: only commas", "/goim/push/keys?operation=1000&keys=,,", "", 400, "bad_request"},
		{"keys: too many", "/goim/push/keys?operation=1000&keys=a,b,c,d", "", 400, "bad_request"},
		{"keys: bad key", "/goim/push/keys?operation=1000&keys=a%20b", "", 400, "bad_request"},
		{"keys: body too large", "/goim/push/keys?operation=1000&keys=a", strings.Repeat("x", 17), 413, "too_large"},
		{"mids: no mids", "/goim/push/mids?operation=1000", "", 400, "bad_request"},
		{"mids: bad mid", "/goim/push/mids?operation=1000&mids=1,x", "", 400, "bad_request"},
		{"mids: zero mid", "/goim/push/mids?operation=1000&mids=0", "", 400, "bad_request"},
		{"mids: too many", "/goim/push/mids?operation=1000&mids=1,2,3,4", "", 400, "bad_request"},
		{"room: no room", "/goim/push/room?operation=1000&type=live", "", 400, "bad_request"},
		{"room: no type", "/goim/push/room?operation=1000&room=1", "", 400, "bad_request"},
		{"room: comma", "/goim/push/room?operation=1000&type=live&room=1,2", "", 400, "bad_request"},
		{"room: too long", "/goim/push/room?operation=1000&type=live&room=" + strings.Repeat("r", 130), "", 400, "bad_request"},
		{"room: body too large", "/goim/push/room?operation=1000&type=live&room=1", strings.Repeat("x", 17), 413, "too_large"},
		{"all: negative speed", "/goim/push/all?operation=1000&speed=-1", "", 400, "bad_request"},
		{"all: bad speed", "/goim/push/all?operation=1000&speed=fast", "", 400, "bad_request"},
		{"all: no operation", "/goim/push/all", "", 400, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, m := e.do(t, "POST", tt.path, tt.body)
			wantErr(t, tt.name, st, m, tt.status, tt.code)
		})
	}
	if msgs, _ := e.bus.take(t); len(msgs) != 0 {
		t.Fatalf("refused pushes published %d messages", len(msgs))
	}
	for _, tt := range []struct{ name, path string }{
		{"top: no type", "/goim/online/top"},
		{"top: bad limit", "/goim/online/top?type=live&limit=0"},
		{"room: no type", "/goim/online/room?rooms=1"},
		{"room: no rooms", "/goim/online/room?type=live"},
		{"room: too many", "/goim/online/room?type=live&rooms=1,2,3,4"},
	} {
		st, m := e.do(t, "GET", tt.path, nil)
		wantErr(t, tt.name, st, m, 400, "bad_request")
	}
}

func TestPushBackendErrors(t *testing.T) {
	e := newEnv(t)
	e.addSession(t, 1, "k1", "comet-a")
	e.bus.mu.Lock()
	e.bus.fail = errBoom
	e.bus.mu.Unlock()
	st, m := e.do(t, "POST", "/goim/push/room?operation=1000&type=live&room=1", "x")
	wantErr(t, "bus down", st, m, http.StatusServiceUnavailable, "unavailable")
	e.reg.setErr(errBoom)
	st, m = e.do(t, "POST", "/goim/push/keys?operation=1000&keys=k1", "x")
	wantErr(t, "registry down", st, m, http.StatusInternalServerError, "internal")
	st, m = e.do(t, "GET", "/goim/online/total", nil)
	wantErr(t, "registry down", st, m, http.StatusInternalServerError, "internal")
}

// The push API's access rule, checked through the handler directly so that
// remote addresses other than loopback can be simulated.
func TestPushAccess(t *testing.T) {
	open := newEnv(t)
	keyed := newEnv(t, func(c *Config) { c.AdminKey = testAdminKey })
	paths := []struct{ method, path string }{
		{"POST", "/goim/push/keys?operation=1000&keys=a"},
		{"POST", "/goim/push/mids?operation=1000&mids=1"},
		{"POST", "/goim/push/room?operation=1000&type=live&room=1"},
		{"POST", "/goim/push/all?operation=1000"},
		{"GET", "/goim/online/top?type=live"},
		{"GET", "/goim/online/room?type=live&rooms=1"},
		{"GET", "/goim/online/total"},
		{"GET", "/goim/nodes/weighted"},
	}
	tests := []struct {
		name   string
		e      *env
		remote string
		auth   string
		status int
	}{
		{"no key, loopback v4", open, "127.0.0.1:5555", "", 200},
		{"no key, loopback 127/8", open, "127.3.2.1:5555", "", 200},
		{"no key, loopback v6", open, "[::1]:5555", "", 200},
		{"no key, v4-mapped loopback", open, "[::ffff:127.0.0.1]:5555", "", 200},
		{"no key, private address", open, "10.0.0.7:5555", "", 403},
		{"no key, public address", open, "203.0.113.9:5555", "", 403},
		{"no key, v6 address", open, "[2001:db8::1]:5555", "", 403},
		{"no key, garbage address", open, "nonsense", "", 403},
		{"no key, a bearer does not help", open, "10.0.0.7:5555", "Bearer whatever", 403},
		{"key, remote with key", keyed, "203.0.113.9:5555", "Bearer " + testAdminKey, 200},
		{"key, loopback with key", keyed, "127.0.0.1:5555", "Bearer " + testAdminKey, 200},
		{"key, loopback without key", keyed, "127.0.0.1:5555", "", 401},
		{"key, wrong key", keyed, "127.0.0.1:5555", "Bearer " + testAdminKey + "x", 401},
		{"key, prefix of key", keyed, "127.0.0.1:5555", "Bearer " + testAdminKey[:5], 401},
		{"key, not bearer", keyed, "127.0.0.1:5555", testAdminKey, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range paths {
				req := httptest.NewRequest(p.method, p.path, strings.NewReader("x"))
				req.RemoteAddr = tt.remote
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
				}
				rec := httptest.NewRecorder()
				tt.e.svc.Handler().ServeHTTP(rec, req)
				if rec.Code != tt.status {
					t.Fatalf("%s %s: %d %s, want %d", p.method, p.path, rec.Code, rec.Body, tt.status)
				}
				var m map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
					t.Fatalf("%s %s: not JSON: %s", p.method, p.path, rec.Body)
				}
				want := map[int]any{200: float64(0), 401: "unauthorized", 403: "forbidden"}[tt.status]
				if m["code"] != want {
					t.Fatalf("%s %s: code %v, want %v", p.method, p.path, m["code"], want)
				}
			}
		})
	}
	// The app API is not restricted to loopback.
	req := httptest.NewRequest("POST", "/api/v1/auth/register", strings.NewReader(`{"username":"remote","password":"12345678"}`))
	req.RemoteAddr = "203.0.113.9:5555"
	rec := httptest.NewRecorder()
	open.svc.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("register from a remote address: %d %s", rec.Code, rec.Body)
	}
}

func TestOnline(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.svc.RenewOnline(ctx, &comet.OnlineReport{Server: "comet-a", TCPAddr: "10.0.0.1:3101", WSAddr: "10.0.0.1:3102", Conns: 50, IPs: 40,
		Rooms: map[string]int32{"live://1": 10, "live://2": 30, "chat://1": 99}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.RenewOnline(ctx, &comet.OnlineReport{Server: "comet-b", TCPAddr: "10.0.0.2:3101", WSAddr: "10.0.0.2:3102", Conns: 20, IPs: 15,
		Rooms: map[string]int32{"live://1": 25, "live://3": 1}})
	if err != nil {
		t.Fatal(err)
	}

	st, m := e.do(t, "GET", "/goim/online/top?type=live&limit=2", nil)
	wantGoimOK(t, "online top", st, m)
	top := m["data"].([]any)
	if len(top) != 2 {
		t.Fatalf("top = %v", top)
	}
	for i, w := range []struct {
		id string
		n  int64
	}{{"1", 35}, {"2", 30}} {
		r := top[i].(map[string]any)
		if r["room_id"] != w.id || num(t, r["count"]) != w.n {
			t.Fatalf("top[%d] = %v, want %s:%d", i, r, w.id, w.n)
		}
	}
	st, m = e.do(t, "GET", "/goim/online/top?type=none", nil)
	wantGoimOK(t, "online top, no rooms", st, m)
	if top, ok := m["data"].([]any); !ok || len(top) != 0 {
		t.Fatalf("top of an unknown type = %v, want []", m["data"])
	}

	st, m = e.do(t, "GET", "/goim/online/room?type=live&rooms=1,3,9", nil)
	wantGoimOK(t, "online room", st, m)
	rooms := m["data"].(map[string]any)
	if len(rooms) != 3 || num(t, rooms["1"]) != 35 || num(t, rooms["3"]) != 1 || num(t, rooms["9"]) != 0 {
		t.Fatalf("online room = %v", rooms)
	}

	st, m = e.do(t, "GET", "/goim/online/total", nil)
	wantGoimOK(t, "online total", st, m)
	total := m["data"].(map[string]any)
	if num(t, total["conn_count"]) != 70 || num(t, total["ip_count"]) != 55 {
		t.Fatalf("online total = %v", total)
	}

	st, m = e.do(t, "GET", "/goim/nodes/weighted", nil)
	wantGoimOK(t, "nodes", st, m)
	data := m["data"].(map[string]any)
	nodes := data["nodes"].([]any)
	if len(nodes) != 2 || num(t, data["heartbeat_s"]) != 30 {
		t.Fatalf("nodes = %v", data)
	}
	first := nodes[0].(map[string]any)
	if first["name"] != "comet-b" || first["tcp_addr"] != "10.0.0.2:3101" || first["ws_addr"] != "10.0.0.2:3102" || num(t, first["conns"]) != 20 {
		t.Fatalf("least loaded node = %v, want comet-b first", first)
	}
}

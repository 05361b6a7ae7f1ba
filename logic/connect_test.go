package logic

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

func connectReq(body string) *comet.ConnectRequest {
	return &comet.ConnectRequest{Server: "comet-1", RemoteAddr: "127.0.0.1:4000", Transport: "tcp", Body: []byte(body)}
}

func authBody(t *testing.T, fields map[string]any) string {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConnect(t *testing.T) {
	e := newEnv(t)
	uid, tok := e.signup(t, "alice")
	before := time.Now()
	rep, err := e.svc.Connect(context.Background(), connectReq(authBody(t, map[string]any{
		"token": tok, "key": "dev-1", "room_id": "live://1000", "platform": "Android", "accepts": []int{1002, 1000, 1001, 1000},
	})))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if rep.UserID != uid || rep.Key != "dev-1" || rep.Room != "live://1000" || rep.Platform != "android" ||
		!slices.Equal(rep.Accepts, []int32{1000, 1001, 1002}) || rep.Heartbeat != 30*time.Second {
		t.Fatalf("reply = %+v", rep)
	}
	var body struct {
		UserID       int64  `json:"user_id"`
		Key          string `json:"key"`
		HeartbeatS   int64  `json:"heartbeat_s"`
		ServerTimeMS int64  `json:"server_time_ms"`
		Node         string `json:"node"`
	}
	if err := json.Unmarshal(rep.Body, &body); err != nil {
		t.Fatalf("AuthReply %s: %v", rep.Body, err)
	}
	if body.UserID != uid || body.Key != "dev-1" || body.HeartbeatS != 30 || body.Node != "comet-1" ||
		body.ServerTimeMS < before.UnixMilli() || body.ServerTimeMS > time.Now().UnixMilli() {
		t.Fatalf("AuthReply = %+v", body)
	}
	ss, _ := e.reg.UserSessions(context.Background(), []int64{uid})
	if len(ss[uid]) != 1 || ss[uid][0] != (session.Session{UserID: uid, Key: "dev-1", Server: "comet-1", Platform: "android"}) {
		t.Fatalf("registry = %+v", ss)
	}

	// The same user and key again (reconnect) is fine.
	if _, err := e.svc.Connect(context.Background(), connectReq(authBody(t, map[string]any{"token": tok, "key": "dev-1"}))); err != nil {
		t.Fatalf("reconnect with the same key: %v", err)
	}
	// No key: one is generated, unique per connection.
	r1, err := e.svc.Connect(context.Background(), connectReq(authBody(t, map[string]any{"token": tok})))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.svc.Connect(context.Background(), connectReq(authBody(t, map[string]any{"token": tok})))
	if err != nil {
		t.Fatal(err)
	}
	if !validKey(r1.Key) || len(r1.Key) < 16 || r1.Key == r2.Key {
		t.Fatalf("generated keys %q %q", r1.Key, r2.Key)
	}
	if !strings.Contains(string(r1.Body), `"key":"`+r1.Key+`"`) {
		t.Fatalf("AuthReply %s lacks the generated key", r1.Body)
	}
	// WebSocket: the token may come from the upgrade's query string.
	req := connectReq(`{"key":"ws-1"}`)
	req.Transport, req.QueryToken = "ws", tok
	if rep, err := e.svc.Connect(context.Background(), req); err != nil || rep.UserID != uid {
		t.Fatalf("Connect with a query token: %+v, %v", rep, err)
	}
	// The body's token wins over the query's.
	req = connectReq(authBody(t, map[string]any{"token": tok}))
	req.QueryToken = "garbage"
	if _, err := e.svc.Connect(context.Background(), req); err != nil {
		t.Fatalf("body token with a bad query token: %v", err)
	}
}

func TestConnectRefused(t *testing.T) {
	e := newEnv(t)
	uid, tok := e.signup(t, "bob")
	sub := func(c *jwt.RegisteredClaims) { c.Subject = itoa(uid) }
	tests := []struct {
		name, body string
		query      string
		code       string
	}{
		{"empty body", "", "", "unauthorized"},
		{"not json", "hello", "", "unauthorized"},
		{"json array", "[]", "", "unauthorized"},
		{"no token", `{"key":"k"}`, "", "unauthorized"},
		{"garbage token", `{"token":"abc"}`, "", "unauthorized"},
		{"garbage query token", `{}`, "garbage", "unauthorized"},
		{"expired", authBody(t, map[string]any{"token": forge(t, jwt.SigningMethodHS256, testSecret, func(c *jwt.RegisteredClaims) {
			sub(c)
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
			c.NotBefore = c.IssuedAt
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		})}), "", "unauthorized"},
		{"alg none", authBody(t, map[string]any{"token": forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, sub)}), "", "unauthorized"},
		{"HS384", authBody(t, map[string]any{"token": forge(t, jwt.SigningMethodHS384, testSecret, sub)}), "", "unauthorized"},
		{"forged secret", authBody(t, map[string]any{"token": forge(t, jwt.SigningMethodHS256, []byte("not-the-secret-0123456789abcdefgh"), sub)}), "", "unauthorized"},
		{"tampered", authBody(t, map[string]any{"token": tok[:len(tok)-2] + "xy"}), "", "unauthorized"},
		{"unknown user", authBody(t, map[string]any{"token": forge(t, jwt.SigningMethodHS256, testSecret, func(c *jwt.RegisteredClaims) { c.Subject = "4242" })}), "", "unauthorized"},
		{"legacy mid", `{"mid":123,"key":"k","room_id":"live://1000","platform":"web","accepts":[1000]}`, "", "unauthorized"},
		{"bad key", authBody(t, map[string]any{"token": tok, "key": "a,b"}), "", "unauthorized"},
		{"long key", authBody(t, map[string]any{"token": tok, "key": strings.Repeat("k", 129)}), "", "unauthorized"},
		{"bad room", authBody(t, map[string]any{"token": tok, "room_id": "live://a b"}), "", "unauthorized"},
		{"long room", authBody(t, map[string]any{"token": tok, "room_id": strings.Repeat("r", 129)}), "", "unauthorized"},
		{"bad platform", authBody(t, map[string]any{"token": tok, "platform": "i/os"}), "", "unauthorized"},
		{"too many accepts", authBody(t, map[string]any{"token": tok, "accepts": make([]int, 257)}), "", "unauthorized"},
		{"accept overflow", authBody(t, map[string]any{"token": tok, "accepts": []int64{1 << 40}}), "", "unauthorized"},
		{"huge body", `{"token":"` + strings.Repeat("a", maxAuthBody) + `"}`, "", "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := connectReq(tt.body)
			req.QueryToken = tt.query
			rep, err := e.svc.Connect(context.Background(), req)
			if err == nil {
				t.Fatalf("Connect accepted: %+v", rep)
			}
			var ce *comet.CloseError
			if !errors.As(err, &ce) || ce.Code != tt.code || ce.Reason == "" {
				t.Fatalf("Connect error %v, want a CloseError %q with a reason", err, tt.code)
			}
		})
	}
	if ss, _ := e.reg.UserSessions(context.Background(), []int64{uid, 123}); len(ss) != 0 {
		t.Fatalf("refused connections left sessions: %+v", ss)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestConnectLegacyMid(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InsecureMidAuth = true })
	rep, err := e.svc.Connect(context.Background(), connectReq(`{"mid":123,"key":"k1","room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}`))
	if err != nil {
		t.Fatalf("legacy mid auth with the switch on: %v", err)
	}
	if rep.UserID != 123 || rep.Key != "k1" || rep.Room != "live://1000" || !slices.Equal(rep.Accepts, []int32{1000, 1001, 1002}) {
		t.Fatalf("reply = %+v", rep)
	}
	// A token still wins over mid.
	uid, tok := e.signup(t, "carol")
	rep, err = e.svc.Connect(context.Background(), connectReq(authBody(t, map[string]any{"mid": 5, "token": tok})))
	if err != nil || rep.UserID != uid {
		t.Fatalf("token and mid: %+v, %v", rep, err)
	}
	// An invalid token is not rescued by mid.
	if _, err := e.svc.Connect(context.Background(), connectReq(`{"mid":5,"token":"bad"}`)); comet.CloseCode(err) != "unauthorized" {
		t.Fatalf("bad token with mid: %v", err)
	}
	if _, err := e.svc.Connect(context.Background(), connectReq(`{"mid":-5}`)); comet.CloseCode(err) != "unauthorized" {
		t.Fatalf("negative mid: %v", err)
	}
}

func TestConnectKeyConflict(t *testing.T) {
	e := newEnv(t)
	_, tokA := e.signup(t, "dave")
	_, tokB := e.signup(t, "erin")
	if _, err := e.svc.Connect(context.Background(), connectReq(authBody(t, map[string]any{"token": tokA, "key": "shared"}))); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Connect(context.Background(), connectReq(authBody(t, map[string]any{"token": tokB, "key": "shared"})))
	var ce *comet.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.CodeUnauthorized || !strings.Contains(ce.Reason, "key in use") {
		t.Fatalf("another user's key: %v", err)
	}
}

func TestConnectRegistryDown(t *testing.T) {
	e := newEnv(t)
	_, tok := e.signup(t, "frank")
	e.reg.setErr(errBoom)
	for _, body := range []string{authBody(t, map[string]any{"token": tok, "key": "k"}), authBody(t, map[string]any{"token": tok})} {
		_, err := e.svc.Connect(context.Background(), connectReq(body))
		if comet.CloseCode(err) != protocol.CodeUnavailable || !errors.Is(err, errBoom) {
			t.Fatalf("Connect with the registry down: %v", err)
		}
	}
	if _, err := e.svc.Connect(context.Background(), &comet.ConnectRequest{Body: []byte("{}")}); err == nil {
		t.Fatal("Connect without a server name succeeded")
	}
}

func TestSessionLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	uid, tok := e.signup(t, "gina")
	req := connectReq(authBody(t, map[string]any{"token": tok, "key": "g1"}))
	req.ConnID = "c1#1"
	if _, err := e.svc.Connect(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Heartbeat(ctx, "comet-1", uid, "g1", "c1#1"); err != nil {
		t.Fatal(err)
	}
	if len(e.reg.touched) != 1 || e.reg.touched[0].Key != "g1" || e.reg.touched[0].UserID != uid || e.reg.touched[0].Server != "comet-1" || e.reg.touched[0].ConnID != "c1#1" {
		t.Fatalf("touched = %+v", e.reg.touched)
	}
	if err := e.svc.RoomJoined(ctx, "comet-1", "live://7"); err != nil {
		t.Fatal(err)
	}
	if srvs, _ := e.reg.RoomServers(ctx, "live://7"); !slices.Equal(srvs, []string{"comet-1"}) {
		t.Fatalf("room servers = %v", srvs)
	}
	if err := e.svc.RoomJoined(ctx, "comet-1", ""); err == nil {
		t.Fatal("RoomJoined with an empty room succeeded")
	}
	counts, err := e.svc.RenewOnline(ctx, &comet.OnlineReport{Server: "comet-1", Conns: 1, Rooms: map[string]int32{"live://7": 1}})
	if err != nil || counts["live://7"] != 1 {
		t.Fatalf("RenewOnline = %v, %v", counts, err)
	}
	counts, err = e.svc.RenewOnline(ctx, &comet.OnlineReport{Server: "comet-2", Conns: 2, Rooms: map[string]int32{"live://7": 2, "live://8": 5}})
	if err != nil || counts["live://7"] != 3 || counts["live://8"] != 5 {
		t.Fatalf("RenewOnline summed over comets = %v, %v", counts, err)
	}
	if _, err := e.svc.RenewOnline(ctx, &comet.OnlineReport{}); err == nil {
		t.Fatal("RenewOnline without a server succeeded")
	}
	// Disconnect from another server leaves the session.
	if err := e.svc.Disconnect(ctx, "comet-9", uid, "g1", "c1#1"); err != nil {
		t.Fatal(err)
	}
	if ss, _ := e.reg.UserSessions(ctx, []int64{uid}); len(ss[uid]) != 1 {
		t.Fatalf("a disconnect from another server removed the session: %+v", ss)
	}
	if err := e.svc.Disconnect(ctx, "comet-1", uid, "g1", "c1#1"); err != nil {
		t.Fatal(err)
	}
	if ss, _ := e.reg.UserSessions(ctx, []int64{uid}); len(ss) != 0 {
		t.Fatalf("sessions after disconnect: %+v", ss)
	}
	e.reg.setErr(errBoom)
	for name, err := range map[string]error{
		"Disconnect":  e.svc.Disconnect(ctx, "comet-1", uid, "g1", "c1#1"),
		"Heartbeat":   e.svc.Heartbeat(ctx, "comet-1", uid, "g1", "c1#1"),
		"RoomJoined":  e.svc.RoomJoined(ctx, "comet-1", "live://1"),
		"RenewOnline": func() error { _, err := e.svc.RenewOnline(ctx, &comet.OnlineReport{Server: "c"}); return err }(),
	} {
		if !errors.Is(err, errBoom) {
			t.Errorf("%s with the registry down = %v", name, err)
		}
	}
}

// TestDisconnectOfReplacedConnection: a device reconnects to the same comet
// with the same key; the old connection's (late) Disconnect must not remove
// the new connection's session.
func TestDisconnectOfReplacedConnection(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	uid, tok := e.signup(t, "hank")
	for _, id := range []string{"c1#1", "c1#2"} {
		req := connectReq(authBody(t, map[string]any{"token": tok, "key": "h1"}))
		req.ConnID = id
		if _, err := e.svc.Connect(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.Disconnect(ctx, "comet-1", uid, "h1", "c1#1"); err != nil {
		t.Fatal(err)
	}
	ss, _ := e.reg.UserSessions(ctx, []int64{uid})
	if len(ss[uid]) != 1 || ss[uid][0].ConnID != "c1#2" {
		t.Fatalf("the old connection's Disconnect removed the new session: %+v", ss)
	}
	if err := e.svc.Disconnect(ctx, "comet-1", uid, "h1", "c1#2"); err != nil {
		t.Fatal(err)
	}
	if ss, _ := e.reg.UserSessions(ctx, []int64{uid}); len(ss) != 0 {
		t.Fatalf("sessions after the current connection's Disconnect: %+v", ss)
	}
}

// TestRenewOnlineKeepsJoinDuringReport: a room joined after the comet took
// its report's snapshot (TakenAt) survives the report.
func TestRenewOnlineKeepsJoinDuringReport(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	taken := time.Now().Add(-time.Hour) // the snapshot, well before the join
	if err := e.svc.RoomJoined(ctx, "comet-1", "live://9"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RenewOnline(ctx, &comet.OnlineReport{Server: "comet-1", TakenAt: taken}); err != nil {
		t.Fatal(err)
	}
	if srvs, _ := e.reg.RoomServers(ctx, "live://9"); !slices.Equal(srvs, []string{"comet-1"}) {
		t.Fatalf("room joined during the report forgotten: servers %v", srvs)
	}
}

// TestConnectRegistryKeyInUse: the registry refusing the key (another user
// took it between KeyOwner and Add) is "key in use", not unavailable.
func TestConnectRegistryKeyInUse(t *testing.T) {
	e := newEnv(t)
	_, tok := e.signup(t, "iris")
	e.reg.setErr(session.ErrKeyInUse)
	_, err := e.svc.Connect(context.Background(), connectReq(authBody(t, map[string]any{"token": tok})))
	var ce *comet.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.CodeUnauthorized || ce.Reason != "key in use" {
		t.Fatalf("Connect with the registry refusing the key: %v", err)
	}
}

func TestReceiveUnknownOp(t *testing.T) {
	e := newEnv(t)
	for _, op := range []int32{protocol.OpHeartbeat, 99, 1000, -1} { // the IM ops: messages_test.go
		p, err := e.svc.Receive(context.Background(), &comet.ReceiveRequest{Server: "comet-1", UserID: 1, Key: "k",
			Packet: protocol.Packet{Ver: 1, Op: op, Seq: 77, Body: []byte(`{}`)}})
		if err != nil || p == nil {
			t.Fatalf("op %d: %v, %v", op, p, err)
		}
		if p.Op != op || p.Seq != 77 || p.Ver != 1 {
			t.Fatalf("op %d: reply header op %d seq %d ver %d", op, p.Op, p.Seq, p.Ver)
		}
		var body map[string]string
		if err := json.Unmarshal(p.Body, &body); err != nil || body["code"] != "unknown_op" || body["message"] == "" {
			t.Fatalf("op %d: body %s", op, p.Body)
		}
	}
}

func TestNewValidation(t *testing.T) {
	e := newEnv(t)
	deps := Deps{Store: e.svc.store, Issuer: e.issuer, Sessions: e.reg, Bus: e.bus}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := New(DefaultConfig(), Deps{Store: e.svc.store}, log); err == nil {
		t.Fatal("New without all deps succeeded")
	}
	bad := DefaultConfig()
	bad.HeartbeatInterval = time.Millisecond
	if _, err := New(bad, deps, log); err == nil {
		t.Fatal("New with a 1ms heartbeat succeeded")
	}
	s, err := New(Config{Password: DefaultConfig().Password}, deps, log)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.HeartbeatInterval != 30*time.Second || s.cfg.TokenTTL != 7*24*time.Hour || s.cfg.MaxRequestBody != 1<<20 {
		t.Fatalf("zero config did not take defaults: %+v", s.cfg)
	}
}

func FuzzParseAuthReq(f *testing.F) {
	f.Add([]byte(`{"token":"a.b.c","key":"k","room_id":"live://1000","platform":"web","accepts":[1000,1001]}`))
	f.Add([]byte(`{"mid":123,"key":"","room_id":"","platform":"ios","accepts":[]}`))
	f.Add([]byte(`{"accepts":[2147483647,-2147483648,1000,1000]}`))
	f.Add([]byte(`{"token":"\u0000","key":"\ud800"}`))
	f.Add([]byte(`{"accepts":[1e3]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := string(body)
		r, err := parseAuthReq(body, 256)
		if string(body) != orig {
			t.Fatal("parseAuthReq modified its input")
		}
		if err != nil {
			return
		}
		if (r.Key != "" && !validKey(r.Key)) || !validRoom(r.RoomID) || !validPlatform(r.Platform) || len(r.Accepts) > 256 || r.Mid < 0 {
			t.Fatalf("accepted invalid fields: %+v", r)
		}
		if !slices.IsSorted(r.Accepts) {
			t.Fatalf("accepts not sorted: %v", r.Accepts)
		}
		for i := 1; i < len(r.Accepts); i++ {
			if r.Accepts[i] == r.Accepts[i-1] {
				t.Fatalf("accepts has duplicates: %v", r.Accepts)
			}
		}
		// The strings must not alias the input buffer.
		for i := range body {
			body[i] = 'X'
		}
		if (r.Key != "" && !validKey(r.Key)) || !validRoom(r.RoomID) {
			t.Fatalf("parsed strings alias the input: %+v", r)
		}
	})
}

// FuzzConnect feeds arbitrary bodies through the whole Connect path.
func FuzzConnect(f *testing.F) {
	e := newEnv(f, func(c *Config) { c.InsecureMidAuth = true })
	f.Add([]byte(`{"mid":1,"key":"k","accepts":[1000]}`))
	f.Add([]byte(`{"token":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rep, err := e.svc.Connect(context.Background(), connectReq(string(body)))
		if err != nil {
			var ce *comet.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("Connect error %v is not a CloseError", err)
			}
			return
		}
		if rep.UserID <= 0 || rep.Key == "" || !json.Valid(rep.Body) {
			t.Fatalf("bad reply %+v", rep)
		}
	})
}

func BenchmarkParseAuthReq(b *testing.B) {
	body := []byte(`{"token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJnb2ltIn0.abc","key":"0b0c4a5e-4a8e-4d59-9c5e-3f1b1b7a9e11","room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseAuthReq(body, 256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConnect(b *testing.B) {
	e := newEnv(b)
	iss := e.issuer
	ctx := context.Background()
	id, err := e.svc.store.CreateUser(ctx, &store.User{Username: "bench", PasswordHash: "h"})
	if err != nil {
		b.Fatal(err)
	}
	tok, _, _ := iss.Issue(id, "d", time.Hour)
	body := []byte(`{"token":"` + tok + `","room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.svc.Connect(ctx, &comet.ConnectRequest{Server: "comet-1", Body: body}); err != nil {
			b.Fatal(err)
		}
	}
}

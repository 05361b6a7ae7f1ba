package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/sqlite"
)

const (
	testIssuerName = "goim-test"
	testAdminKey   = "admin-key-0123456789"
)

var testSecret = []byte("logic-test-secret-0123456789abcdef")

// testRegistry is the in-memory session registry with error injection and
// a record of Touch calls.
type testRegistry struct {
	*session.Memory
	mu      sync.Mutex
	err     error // returned by every call when set
	touched []session.Session
	// hold, when set, makes the next UserSessions call wait until it is
	// closed (later calls pass): it stalls one event fan-out.
	hold chan struct{}
}

func newTestRegistry() *testRegistry {
	return &testRegistry{Memory: session.NewMemory(session.MemoryConfig{})}
}

func (r *testRegistry) setErr(err error) { r.mu.Lock(); r.err = err; r.mu.Unlock() }

func (r *testRegistry) fail() error { r.mu.Lock(); defer r.mu.Unlock(); return r.err }

func (r *testRegistry) Add(ctx context.Context, s session.Session) error {
	if err := r.fail(); err != nil {
		return err
	}
	return r.Memory.Add(ctx, s)
}

func (r *testRegistry) Remove(ctx context.Context, userID int64, key, server, connID string) (bool, error) {
	if err := r.fail(); err != nil {
		return false, err
	}
	return r.Memory.Remove(ctx, userID, key, server, connID)
}

func (r *testRegistry) Touch(ctx context.Context, s session.Session) error {
	if err := r.fail(); err != nil {
		return err
	}
	r.mu.Lock()
	r.touched = append(r.touched, s)
	r.mu.Unlock()
	return r.Memory.Touch(ctx, s)
}

func (r *testRegistry) UserSessions(ctx context.Context, ids []int64) (map[int64][]session.Session, error) {
	if err := r.fail(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	hold := r.hold
	r.hold = nil
	r.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return r.Memory.UserSessions(ctx, ids)
}

func (r *testRegistry) KeyOwner(ctx context.Context, key string) (int64, string, bool, error) {
	if err := r.fail(); err != nil {
		return 0, "", false, err
	}
	return r.Memory.KeyOwner(ctx, key)
}

func (r *testRegistry) KeyServers(ctx context.Context, keys []string) (map[string]string, error) {
	if err := r.fail(); err != nil {
		return nil, err
	}
	return r.Memory.KeyServers(ctx, keys)
}

func (r *testRegistry) SetServer(ctx context.Context, info session.ServerInfo, rooms map[string]int32) error {
	if err := r.fail(); err != nil {
		return err
	}
	return r.Memory.SetServer(ctx, info, rooms)
}

func (r *testRegistry) AddRoom(ctx context.Context, server, room string) error {
	if err := r.fail(); err != nil {
		return err
	}
	return r.Memory.AddRoom(ctx, server, room)
}

func (r *testRegistry) RoomCounts(ctx context.Context) (map[string]int32, error) {
	if err := r.fail(); err != nil {
		return nil, err
	}
	return r.Memory.RoomCounts(ctx)
}

func (r *testRegistry) Servers(ctx context.Context) ([]session.ServerInfo, error) {
	if err := r.fail(); err != nil {
		return nil, err
	}
	return r.Memory.Servers(ctx)
}

// recBus is the in-process bus that also records what was published, so
// tests can assert synchronously.
type recBus struct {
	*bus.Memory
	mu   sync.Mutex
	msgs []bus.Message
	fail error
}

func (b *recBus) Publish(ctx context.Context, msgs ...bus.Message) error {
	b.mu.Lock()
	fail := b.fail
	if fail == nil {
		b.msgs = append(b.msgs, msgs...)
	}
	b.mu.Unlock()
	if fail != nil {
		return fail
	}
	return b.Memory.Publish(ctx, msgs...)
}

// take returns and forgets the recorded messages, decoded.
func (b *recBus) take(t *testing.T) ([]pushmsg.Msg, []string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var ms []pushmsg.Msg
	var keys []string
	for _, m := range b.msgs {
		if m.Topic != bus.TopicPush {
			t.Fatalf("published on topic %q", m.Topic)
		}
		var pm pushmsg.Msg
		if err := pm.Unmarshal(m.Value); err != nil {
			t.Fatalf("published an undecodable push message: %v", err)
		}
		ms = append(ms, pm)
		keys = append(keys, m.Key)
	}
	b.msgs = nil
	return ms, keys
}

type env struct {
	svc    *Service
	srv    *httptest.Server
	reg    *testRegistry
	bus    *recBus
	issuer *auth.Issuer
	st     store.Store
	cache  *recCache
}

func newEnv(t testing.TB, mut ...func(*Config)) *env {
	t.Helper()
	return newEnvStore(t, openSQLite(t), nil, mut...)
}

// openSQLite opens a fresh SQLite store in a temporary directory.
func openSQLite(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "goim.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newEnvStore starts a service on st with the memory bus and registry and
// cache (nil: a recording fake, e.cache), behind an httptest server.
func newEnvStore(t testing.TB, st store.Store, cache RelationCache, mut ...func(*Config)) *env {
	t.Helper()
	iss, err := auth.NewIssuer(testSecret, testIssuerName)
	if err != nil {
		t.Fatal(err)
	}
	mb := bus.NewMemory(bus.MemoryConfig{})
	t.Cleanup(func() { mb.Close() })
	rb := &recBus{Memory: mb}
	reg := newTestRegistry()
	rc := &recCache{}
	if cache == nil {
		cache = rc
	}
	cfg := DefaultConfig()
	cfg.Password = auth.TestPasswordParams()
	for _, m := range mut {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	svc, err := New(cfg, Deps{Store: st, Issuer: iss, Sessions: reg, Bus: rb, Cache: cache}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &env{svc: svc, srv: srv, reg: reg, bus: rb, issuer: iss, st: st, cache: rc}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// do sends a request and decodes a JSON answer (nil for an empty body).
func (e *env) do(t *testing.T, method, path string, body any, header ...string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 {
		return resp.StatusCode, nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("%s %s: content type %q, body %s", method, path, ct, raw)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s %s: answer is not a JSON object: %s", method, path, raw)
	}
	return resp.StatusCode, m
}

// wantErr asserts an error answer.
func wantErr(t *testing.T, what string, status int, m map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || m["code"] != wantCode {
		t.Fatalf("%s: got %d %v, want %d code %q", what, status, m, wantStatus, wantCode)
	}
	if msg, ok := m["message"].(string); !ok || msg == "" {
		t.Fatalf("%s: error without a message: %v", what, m)
	}
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// register and login a user, returning its id and token.
func (e *env) signup(t *testing.T, username string) (int64, string) {
	t.Helper()
	st, m := e.do(t, "POST", "/api/v1/auth/register", map[string]any{"username": username, "password": "password-" + username})
	if st != http.StatusCreated {
		t.Fatalf("register %s: %d %v", username, st, m)
	}
	st, m = e.do(t, "POST", "/api/v1/auth/login", map[string]any{"username": username, "password": "password-" + username, "device_id": "dev-" + username, "platform": "web"})
	if st != http.StatusOK {
		t.Fatalf("login %s: %d %v", username, st, m)
	}
	return num(t, m["user_id"]), m["token"].(string)
}

// forge signs a token with arbitrary claims using the test secret.
func forge(t *testing.T, m jwt.SigningMethod, key any, mut func(*jwt.RegisteredClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.RegisteredClaims{
		Issuer:    testIssuerName,
		Subject:   "1",
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}
	if mut != nil {
		mut(&c)
	}
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var errBoom = errors.New("boom")

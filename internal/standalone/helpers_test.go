package standalone

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/goimdev/goim/client"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/testenv"
	"github.com/goimdev/goim/protocol"
)

const testSecret = "0123456789abcdef0123456789abcdef-e2e"

// startServer starts a one-process server on loopback ports chosen by the
// kernel, with a fresh data directory.
func startServer(t *testing.T, mutate ...func(*config.Config)) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Comet.TCPAddr = "127.0.0.1:0"
	cfg.Comet.WSAddr = "127.0.0.1:0"
	cfg.Comet.DrainWindow = 200 * time.Millisecond
	cfg.JWTSecret = testSecret
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx := context.Background()
	s, err := New(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (s *Server) api() *client.API {
	return &client.API{BaseURL: "http://" + s.HTTPAddr().String()}
}

// user is a registered, logged-in account.
type user struct {
	id    int64
	token string
}

func newUser(t *testing.T, s *Server, name string) user {
	t.Helper()
	ctx := testCtx(t)
	api := s.api()
	id, err := api.Register(ctx, name, "correct horse battery", name)
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	lr, err := api.Login(ctx, name, "correct horse battery", "", "pc")
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	if lr.UserID != id || lr.Token == "" {
		t.Fatalf("login answered %+v for user %d", lr, id)
	}
	return user{id: id, token: lr.Token}
}

func (s *Server) addr(transport string) string {
	if transport == "ws" {
		return s.WSAddr().String()
	}
	return s.TCPAddr().String()
}

func dial(t *testing.T, s *Server, transport string, u user, cfg client.Config) *client.Client {
	t.Helper()
	cfg.Addr = s.addr(transport)
	cfg.Transport = transport
	cfg.Token = u.token
	c, err := client.Dial(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("dial %s as %d: %v", transport, u.id, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// next returns the next pushed packet, failing after a deadline.
func next(t *testing.T, c *client.Client) protocol.Packet {
	t.Helper()
	select {
	case p, ok := <-c.Packets():
		if !ok {
			t.Fatalf("client closed: %v", c.Err())
		}
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no packet within 10s")
	}
	return protocol.Packet{}
}

// expect reads pushes until one with op arrives and returns it; any other
// business op seen before it is an error (used to prove filtering: a push
// that must be filtered is sent before one that must arrive).
func expect(t *testing.T, c *client.Client, op int32, body string) {
	t.Helper()
	for {
		p := next(t, c)
		if p.Op == op && string(p.Body) == body {
			return
		}
		if p.Op >= protocol.OpBusinessMin {
			t.Fatalf("got op %d %q while waiting for op %d %q", p.Op, p.Body, op, body)
		}
	}
}

// freeAddr returns a loopback address that was free a moment ago.

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ = fmt.Sprintf

// forEachStore runs fn against a server on each store of record and cache
// driver: SQLite always, MySQL (a fresh database) when GOIM_TEST_MYSQL_DSN
// is set, each also with cache.driver redis (relation cache, message cache
// and unread counters on a key prefix of its own) when GOIM_TEST_REDIS_ADDR
// is set.
func forEachStore(t *testing.T, fn func(t *testing.T, s *Server)) {
	mysqlStore := func(t *testing.T) func(*config.Config) {
		dsn := testenv.MySQLDSN(t, "goim_e2e")
		return func(c *config.Config) {
			c.Store.Driver = "mysql"
			c.Store.MySQL.DSN = dsn
		}
	}
	for _, st := range []struct {
		name string
		mut  func(t *testing.T) func(*config.Config)
	}{
		{"sqlite", func(*testing.T) func(*config.Config) { return func(*config.Config) {} }},
		{"mysql", mysqlStore},
	} {
		t.Run(st.name, func(t *testing.T) { fn(t, startServer(t, st.mut(t))) })
		t.Run(st.name+"+redis", func(t *testing.T) { fn(t, startServer(t, st.mut(t), redisCache(t))) })
	}
}

// redisCache is cache.driver redis on GOIM_TEST_REDIS_ADDR under a key
// prefix of the test's own; it skips the test when the variable is unset.
func redisCache(t *testing.T) func(*config.Config) {
	addr, prefix := testenv.RedisAddr(t), testenv.RedisPrefix(t)
	return func(c *config.Config) {
		c.Cache.Driver, c.Cache.RedisAddr = "redis", addr
		c.Cache.Redis.Prefix, c.Cache.Messages.Redis.Prefix, c.Cache.Unread.Prefix = prefix+"rel:", prefix+"msg:", prefix+"unread:"
	}
}

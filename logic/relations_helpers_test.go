package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/mysql"
	"github.com/goimdev/goim/internal/testenv"
	"github.com/goimdev/goim/protocol"
)

// storeFactory opens a fresh, empty, migrated store for one test.
type storeFactory struct {
	name string
	open func(t *testing.T) store.Store
}

// storeFactories are the stores the relation tests run on: SQLite always,
// MySQL when GOIM_TEST_MYSQL_DSN is set.
var storeFactories = []storeFactory{
	{"sqlite", func(t *testing.T) store.Store { return openSQLite(t) }},
	{"mysql", openMySQL},
}

// forEachStore runs fn once per store backend, each on a fresh env.
func forEachStore(t *testing.T, fn func(t *testing.T, e *env), mut ...func(*Config)) {
	for _, f := range storeFactories {
		t.Run(f.name, func(t *testing.T) {
			fn(t, newEnvStore(t, f.open(t), nil, mut...))
		})
	}
}

// openMySQL opens a fresh database on the server of GOIM_TEST_MYSQL_DSN
// (dropped when the test ends); it skips the test when the variable is unset.
func openMySQL(t *testing.T) store.Store {
	t.Helper()
	dsn := testenv.MySQLDSN(t, "goim_logic")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := mysql.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("mysql.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// recCache records the invalidations the service makes.
type recCache struct {
	mu   sync.Mutex
	seen []string
	fail error
}

func (c *recCache) rec(s string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, s)
	return c.fail
}

func (c *recCache) InvalidateFriend(_ context.Context, a, b int64) error {
	return c.rec(fmt.Sprintf("friend %d %d", min(a, b), max(a, b)))
}

func (c *recCache) InvalidateBlock(_ context.Context, u, b int64) error {
	return c.rec(fmt.Sprintf("block %d %d", u, b))
}

func (c *recCache) InvalidateMember(_ context.Context, g int64, users ...int64) error {
	users = slices.Sorted(slices.Values(users))
	return c.rec(fmt.Sprintf("member %d %v", g, users))
}

func (c *recCache) InvalidateGroup(_ context.Context, g int64) error {
	return c.rec(fmt.Sprintf("group %d", g))
}

// take returns and forgets the invalidations recorded.
func (c *recCache) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.seen
	c.seen = nil
	return s
}

// wantInvalidated asserts that the recorded invalidations since the last
// call are exactly want (in order).
func (e *env) wantInvalidated(t *testing.T, what string, want ...string) {
	t.Helper()
	if got := e.cache.take(); !slices.Equal(got, want) {
		t.Fatalf("%s: invalidations %q, want %q", what, got, want)
	}
}

// tuser is a signed-up test user.
type tuser struct {
	id   int64
	tok  string
	name string
}

func (e *env) user(t *testing.T, name string) tuser {
	t.Helper()
	id, tok := e.signup(t, name)
	return tuser{id: id, tok: tok, name: name}
}

func (u tuser) ids() string { return fmt.Sprint(u.id) }

// call sends a request as u.
func (e *env) call(t *testing.T, u tuser, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return e.do(t, method, path, body, bearer(u.tok)...)
}

// ok sends a request as u and fails unless it answers want.
func (e *env) ok(t *testing.T, u tuser, want int, method, path string, body any) map[string]any {
	t.Helper()
	st, m := e.call(t, u, method, path, body)
	if st != want {
		t.Fatalf("%s %s as %s: %d %v, want %d", method, path, u.name, st, m, want)
	}
	return m
}

// refused sends a request as u and asserts an error answer.
func (e *env) refused(t *testing.T, u tuser, status int, code, method, path string, body any) {
	t.Helper()
	st, m := e.call(t, u, method, path, body)
	wantErr(t, fmt.Sprintf("%s %s as %s", method, path, u.name), st, m, status, code)
}

// befriend makes a and b friends through the API.
func (e *env) befriend(t *testing.T, a, b tuser) {
	t.Helper()
	m := e.ok(t, a, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": b.id, "message": "hi"})
	e.ok(t, b, http.StatusOK, "POST", fmt.Sprintf("/api/v1/friends/requests/%d/accept", num(t, m["request_id"])), nil)
}

// newGroup creates a group owned by owner with members, returning its id.
func (e *env) newGroup(t *testing.T, owner tuser, members ...tuser) int64 {
	t.Helper()
	ids := make([]int64, len(members))
	for i, m := range members {
		ids[i] = m.id
	}
	m := e.ok(t, owner, http.StatusCreated, "POST", "/api/v1/groups", map[string]any{"name": "group of " + owner.name, "members": ids})
	return num(t, m["group_id"])
}

// online registers a device session of u on server and returns its key.
func (e *env) online(t *testing.T, u tuser, device, server string) string {
	t.Helper()
	key := fmt.Sprintf("%s-%s", u.name, device)
	if err := e.reg.Add(context.Background(), session.Session{UserID: u.id, Key: key, Server: server, Platform: "web"}); err != nil {
		t.Fatal(err)
	}
	return key
}

// event is an Op 22 push logic published, with its decoded body.
type event struct {
	server string
	keys   []string
	body   map[string]any
}

// events returns and forgets the events published on the bus.
func (e *env) events(t *testing.T) []event {
	t.Helper()
	msgs, busKeys := e.bus.take(t)
	out := make([]event, 0, len(msgs))
	for i, m := range msgs {
		if m.Operation != protocol.OpEvent {
			t.Fatalf("published op %d, want %d", m.Operation, protocol.OpEvent)
		}
		if busKeys[i] != m.Server {
			t.Fatalf("bus key %q for a push to server %q", busKeys[i], m.Server)
		}
		var body map[string]any
		dec := json.NewDecoder(bytes.NewReader(m.Body))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			t.Fatalf("event body %q: %v", m.Body, err)
		}
		out = append(out, event{server: m.Server, keys: slices.Clone(m.Keys), body: body})
	}
	return out
}

// byKey maps each device key to the bodies it was sent, in order.
func byKey(evs []event) map[string][]map[string]any {
	m := make(map[string][]map[string]any)
	for _, ev := range evs {
		for _, k := range ev.keys {
			m[k] = append(m[k], ev.body)
		}
	}
	return m
}

// wantEvent asserts that key got exactly one event of this type (and of
// this change, when fields has one), with the given fields (compared as
// printed), and returns it.
func wantEvent(t *testing.T, got map[string][]map[string]any, key, typ string, fields map[string]any) map[string]any {
	t.Helper()
	var match []map[string]any
	for _, b := range got[key] {
		if b["type"] == typ && (fields["change"] == nil || b["change"] == fields["change"]) {
			match = append(match, b)
		}
	}
	if len(match) != 1 {
		t.Fatalf("device %s: %d %s events, want 1 (all: %v)", key, len(match), typ, got[key])
	}
	for k, v := range fields {
		if fmt.Sprint(match[0][k]) != fmt.Sprint(v) {
			t.Fatalf("device %s: %s event field %s = %v, want %v (event %v)", key, typ, k, match[0][k], v, match[0])
		}
	}
	return match[0]
}

// changes lists the "change" of the group_changed events a key got.
func changes(got map[string][]map[string]any, key string) []string {
	var out []string
	for _, b := range got[key] {
		if b["type"] == evGroupChanged {
			out = append(out, fmt.Sprint(b["change"]))
		}
	}
	return out
}

// list returns the array field of an answer as objects.
func list(t *testing.T, m map[string]any, field string) []map[string]any {
	t.Helper()
	arr, ok := m[field].([]any)
	if !ok {
		t.Fatalf("answer has no %q array: %v", field, m)
	}
	out := make([]map[string]any, len(arr))
	for i, v := range arr {
		if out[i], ok = v.(map[string]any); !ok {
			t.Fatalf("%s[%d] is %T", field, i, v)
		}
	}
	return out
}

// ids returns the numeric field of each item.
func idsOf(t *testing.T, items []map[string]any, field string) []int64 {
	t.Helper()
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = num(t, it[field])
	}
	return out
}

func path(format string, args ...any) string { return fmt.Sprintf(format, args...) }

package logic

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestEventsDocumented checks that docs/protocol.md's Events section names
// every event type and group change the code sends.
func TestEventsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "\n## Events")
	if i < 0 {
		t.Fatal("docs/protocol.md has no Events section")
	}
	doc = doc[i:]
	for _, name := range []string{evFriendRequest, evFriendAdded, evFriendRemoved, evGroupChanged,
		changeCreated, changeMemberJoined, changeMemberLeft, changeMemberKicked, changeRoleChanged, changeMuted,
		changeUnmuted, changeNickname, changeAnnouncement, changeUpdated, changeDismissed, changeOwnerTransferred} {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("docs/protocol.md Events section does not name `%s`", name)
		}
	}
}

// TestEventRouting checks that one event reaches every device of every
// user concerned, with one push message per comet, keyed by the comet.
func TestEventRouting(t *testing.T) {
	e := newEnv(t)
	owner, a, b := e.user(t, "owner"), e.user(t, "usera"), e.user(t, "userb")
	keys := []string{
		e.online(t, owner, "phone", "comet-1"), e.online(t, owner, "pc", "comet-2"),
		e.online(t, a, "phone", "comet-2"), e.online(t, a, "web", "comet-3"),
		e.online(t, b, "phone", "comet-1"),
	}
	e.newGroup(t, owner, a, b)
	evs := e.events(t)
	if len(evs) != 3 {
		t.Fatalf("%d push messages, want one per comet (3): %+v", len(evs), evs)
	}
	var servers, got []string
	for _, ev := range evs {
		servers = append(servers, ev.server)
		got = append(got, ev.keys...)
		if ev.body["type"] != evGroupChanged || ev.body["change"] != changeCreated {
			t.Fatalf("event %v", ev.body)
		}
	}
	slices.Sort(got)
	slices.Sort(keys)
	if !slices.Equal(got, keys) || !slices.Equal(servers, []string{"comet-1", "comet-2", "comet-3"}) {
		t.Fatalf("keys %v on servers %v, want %v on comet-1..3", got, servers, keys)
	}
}

// TestSideEffectFailures checks that a change stands, and is answered as
// done, when the events or the cache invalidation fail afterwards.
func TestSideEffectFailures(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	e.online(t, bob, "phone", "comet-1")

	before := testutil.ToFloat64(eventErrors)
	e.bus.mu.Lock()
	e.bus.fail = errBoom
	e.bus.mu.Unlock()
	e.ok(t, alice, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": bob.id})
	if d := testutil.ToFloat64(eventErrors) - before; d != 1 {
		t.Fatalf("event errors +%v, want +1", d)
	}
	e.bus.mu.Lock()
	e.bus.fail = nil
	e.bus.mu.Unlock()

	e.reg.setErr(errBoom)
	e.ok(t, alice, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", bob.id), nil)
	e.reg.setErr(nil)

	beforeInv := testutil.ToFloat64(cacheInvalidateErrors)
	e.cache.mu.Lock()
	e.cache.fail = errBoom
	e.cache.mu.Unlock()
	e.ok(t, alice, http.StatusNoContent, "DELETE", path("/api/v1/blocks/%d", bob.id), nil)
	if d := testutil.ToFloat64(cacheInvalidateErrors) - beforeInv; d != 1 {
		t.Fatalf("invalidation errors +%v, want +1", d)
	}
	if m := e.ok(t, alice, http.StatusOK, "GET", "/api/v1/blocks", nil); len(list(t, m, "blocks")) != 0 {
		t.Fatalf("the unblock did not stand: %v", m)
	}
	m := e.ok(t, bob, http.StatusOK, "GET", "/api/v1/friends/requests", nil)
	if len(list(t, m, "incoming")) != 1 {
		t.Fatalf("the request did not stand: %v", m)
	}
}

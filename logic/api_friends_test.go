package logic

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFriendFlow(t *testing.T) {
	forEachStore(t, testFriendFlow)
}

func testFriendFlow(t *testing.T, e *env) {
	alice, bob, carol := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol")
	a1 := e.online(t, alice, "phone", "comet-1")
	a2 := e.online(t, alice, "pc", "comet-2")
	b1 := e.online(t, bob, "phone", "comet-1")
	c1 := e.online(t, carol, "phone", "comet-2")
	e.events(t)

	// Send; the recipient's devices get friend_request, nobody else.
	m := e.ok(t, alice, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": bob.id, "message": "hi bob"})
	rid := num(t, m["request_id"])
	if m["merged"] != false || rid <= 0 {
		t.Fatalf("first request: %v", m)
	}
	got := byKey(e.events(t))
	ev := wantEvent(t, got, b1, evFriendRequest, map[string]any{"merged": false})
	req := ev["request"].(map[string]any)
	if num(t, req["request_id"]) != rid || num(t, req["from_user"]) != alice.id || num(t, req["to_user"]) != bob.id ||
		req["message"] != "hi bob" || req["status"] != "pending" || req["user"].(map[string]any)["username"] != "alice" {
		t.Fatalf("friend_request event: %v", ev)
	}
	if len(got[a1])+len(got[a2])+len(got[c1]) != 0 {
		t.Fatalf("events to others: %v", got)
	}

	// A duplicate is merged: same id, new message.
	m = e.ok(t, alice, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": bob.id, "message": "hello again"})
	if num(t, m["request_id"]) != rid || m["merged"] != true {
		t.Fatalf("duplicate request: %v, want request_id %d merged", m, rid)
	}
	wantEvent(t, byKey(e.events(t)), b1, evFriendRequest, map[string]any{"merged": true})

	// Lists: bob sees it incoming, alice outgoing, with the other's profile.
	m = e.ok(t, bob, http.StatusOK, "GET", "/api/v1/friends/requests", nil)
	in, out := list(t, m, "incoming"), list(t, m, "outgoing")
	if len(in) != 1 || len(out) != 0 || num(t, in[0]["request_id"]) != rid || in[0]["message"] != "hello again" ||
		in[0]["status"] != "pending" || in[0]["user"].(map[string]any)["username"] != "alice" {
		t.Fatalf("bob's requests: %v", m)
	}
	m = e.ok(t, alice, http.StatusOK, "GET", "/api/v1/friends/requests?limit=500", nil)
	if in, out := list(t, m, "incoming"), list(t, m, "outgoing"); len(in) != 0 || len(out) != 1 || out[0]["user"].(map[string]any)["username"] != "bob" {
		t.Fatalf("alice's requests: %v", m)
	}

	// Only the recipient accepts.
	accept := path("/api/v1/friends/requests/%d/accept", rid)
	e.refused(t, carol, http.StatusForbidden, "forbidden", "POST", accept, nil)
	e.refused(t, alice, http.StatusForbidden, "forbidden", "POST", accept, nil)
	e.wantInvalidated(t, "refused accepts")
	m = e.ok(t, bob, http.StatusOK, "POST", accept, nil)
	if m["status"] != "accepted" || num(t, m["request_id"]) != rid {
		t.Fatalf("accept: %v", m)
	}
	e.wantInvalidated(t, "accept", fmt.Sprintf("friend %d %d", alice.id, bob.id))
	got = byKey(e.events(t))
	for _, k := range []string{a1, a2} {
		ev := wantEvent(t, got, k, evFriendAdded, map[string]any{"friend_id": bob.id, "by": bob.id, "request_id": rid})
		if num(t, ev["version"]) <= 0 {
			t.Fatalf("friend_added without version: %v", ev)
		}
	}
	wantEvent(t, got, b1, evFriendAdded, map[string]any{"friend_id": alice.id, "by": bob.id})
	if len(got[c1]) != 0 {
		t.Fatalf("carol got %v", got[c1])
	}
	e.refused(t, bob, http.StatusConflict, "conflict", "POST", accept, nil)
	e.refused(t, bob, http.StatusConflict, "conflict", "POST", path("/api/v1/friends/requests/%d/reject", rid), nil)
	e.refused(t, alice, http.StatusConflict, "already_friends", "POST", "/api/v1/friends/requests", map[string]any{"to_user": bob.id})
	e.refused(t, bob, http.StatusConflict, "already_friends", "POST", "/api/v1/friends/requests", map[string]any{"to_user": alice.id})

	// Friend list: full, then incremental.
	m = e.ok(t, alice, http.StatusOK, "GET", "/api/v1/friends", nil)
	fr := list(t, m, "friends")
	if m["full"] != true || len(fr) != 1 || num(t, fr[0]["user_id"]) != bob.id || fr[0]["username"] != "bob" || fr[0]["nickname"] != "bob" || fr[0]["remark"] != "" {
		t.Fatalf("alice's friends: %v", m)
	}
	v1 := num(t, m["version"])
	e.ok(t, alice, http.StatusNoContent, "PATCH", path("/api/v1/friends/%d", bob.id), map[string]any{"remark": "Bobby 🐝"})
	m = e.ok(t, alice, http.StatusOK, "GET", path("/api/v1/friends?since_version=%d", v1), nil)
	fr = list(t, m, "friends")
	v2 := num(t, m["version"])
	if m["full"] != false || v2 <= v1 || len(fr) != 1 || fr[0]["remark"] != "Bobby 🐝" || num(t, fr[0]["version"]) != v2 {
		t.Fatalf("friends since %d: %v", v1, m)
	}
	m = e.ok(t, alice, http.StatusOK, "GET", path("/api/v1/friends?since_version=%d", v2), nil)
	if m["full"] != false || len(list(t, m, "friends")) != 0 || num(t, m["version"]) != v2 {
		t.Fatalf("friends since the current version: %v", m)
	}
	// Bob's remark of alice is his own.
	m = e.ok(t, bob, http.StatusOK, "GET", "/api/v1/friends", nil)
	if fr := list(t, m, "friends"); len(fr) != 1 || fr[0]["remark"] != "" {
		t.Fatalf("bob's friends: %v", m)
	}
	e.refused(t, carol, http.StatusNotFound, "not_found", "PATCH", path("/api/v1/friends/%d", bob.id), map[string]any{"remark": "x"})

	// Delete: both sides get friend_removed, both lists a tombstone.
	e.events(t)
	e.ok(t, alice, http.StatusNoContent, "DELETE", path("/api/v1/friends/%d", bob.id), nil)
	e.wantInvalidated(t, "delete", fmt.Sprintf("friend %d %d", alice.id, bob.id))
	got = byKey(e.events(t))
	wantEvent(t, got, a1, evFriendRemoved, map[string]any{"friend_id": bob.id, "by": alice.id})
	wantEvent(t, got, a2, evFriendRemoved, map[string]any{"friend_id": bob.id, "by": alice.id})
	wantEvent(t, got, b1, evFriendRemoved, map[string]any{"friend_id": alice.id, "by": alice.id})
	m = e.ok(t, alice, http.StatusOK, "GET", path("/api/v1/friends?since_version=%d", v2), nil)
	fr = list(t, m, "friends")
	if m["full"] != false || len(fr) != 1 || fr[0]["deleted"] != true || num(t, fr[0]["user_id"]) != bob.id {
		t.Fatalf("friends after delete: %v", m)
	}
	if m = e.ok(t, alice, http.StatusOK, "GET", "/api/v1/friends", nil); len(list(t, m, "friends")) != 0 || m["full"] != true {
		t.Fatalf("full list after delete: %v", m)
	}
	e.refused(t, alice, http.StatusNotFound, "not_found", "DELETE", path("/api/v1/friends/%d", bob.id), nil)
	e.refused(t, bob, http.StatusNotFound, "not_found", "DELETE", path("/api/v1/friends/%d", alice.id), nil)

	// Reject: the sender hears nothing; a new request may follow.
	m = e.ok(t, carol, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": alice.id})
	crid := num(t, m["request_id"])
	e.events(t)
	e.refused(t, carol, http.StatusForbidden, "forbidden", "POST", path("/api/v1/friends/requests/%d/reject", crid), nil)
	m = e.ok(t, alice, http.StatusOK, "POST", path("/api/v1/friends/requests/%d/reject", crid), nil)
	if m["status"] != "rejected" {
		t.Fatalf("reject: %v", m)
	}
	if evs := e.events(t); len(evs) != 0 {
		t.Fatalf("reject published %v", evs)
	}
	e.wantInvalidated(t, "reject")
	e.refused(t, alice, http.StatusConflict, "conflict", "POST", path("/api/v1/friends/requests/%d/accept", crid), nil)
	m = e.ok(t, carol, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": alice.id})
	if num(t, m["request_id"]) == crid || m["merged"] != false {
		t.Fatalf("request after a rejection: %v, want a new request", m)
	}

	// Requests that cross: accepting one resolves the other.
	m = e.ok(t, alice, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": carol.id})
	arid := num(t, m["request_id"])
	m = e.ok(t, alice, http.StatusOK, "GET", "/api/v1/friends/requests", nil)
	var pending int64
	for _, r := range list(t, m, "incoming") {
		if r["status"] == "pending" {
			pending = num(t, r["request_id"])
		}
	}
	e.ok(t, alice, http.StatusOK, "POST", path("/api/v1/friends/requests/%d/accept", pending), nil)
	e.refused(t, carol, http.StatusConflict, "conflict", "POST", path("/api/v1/friends/requests/%d/accept", arid), nil)
	m = e.ok(t, carol, http.StatusOK, "GET", "/api/v1/friends", nil)
	if fr := list(t, m, "friends"); len(fr) != 1 || num(t, fr[0]["user_id"]) != alice.id {
		t.Fatalf("carol's friends: %v", m)
	}
}

func TestBlocks(t *testing.T) {
	forEachStore(t, testBlocks)
}

func testBlocks(t *testing.T, e *env) {
	alice, bob, carol := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol")
	e.ok(t, alice, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", bob.id), nil)
	e.wantInvalidated(t, "block", fmt.Sprintf("block %d %d", alice.id, bob.id))
	e.ok(t, alice, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", bob.id), nil) // idempotent
	e.ok(t, alice, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", carol.id), nil)
	m := e.ok(t, alice, http.StatusOK, "GET", "/api/v1/blocks", nil)
	bl := list(t, m, "blocks")
	if got := idsOf(t, bl, "user_id"); len(got) != 2 || !slices.Contains(got, bob.id) || !slices.Contains(got, carol.id) {
		t.Fatalf("blocks: %v", m)
	}
	for _, b := range bl {
		if b["username"] == "" || num(t, b["created_at_ms"]) <= 0 {
			t.Fatalf("block entry %v", b)
		}
	}
	if m = e.ok(t, bob, http.StatusOK, "GET", "/api/v1/blocks", nil); len(list(t, m, "blocks")) != 0 {
		t.Fatalf("bob's blocks: %v", m)
	}

	// The block stops requests from bob to alice, not the other way round
	// once alice unblocks.
	e.refused(t, bob, http.StatusForbidden, "blocked", "POST", "/api/v1/friends/requests", map[string]any{"to_user": alice.id})
	e.refused(t, alice, http.StatusConflict, "conflict", "POST", "/api/v1/friends/requests", map[string]any{"to_user": bob.id})
	e.ok(t, alice, http.StatusNoContent, "DELETE", path("/api/v1/blocks/%d", bob.id), nil)
	e.wantInvalidated(t, "block again, block carol, unblock", fmt.Sprintf("block %d %d", alice.id, bob.id), fmt.Sprintf("block %d %d", alice.id, carol.id), fmt.Sprintf("block %d %d", alice.id, bob.id))
	e.ok(t, alice, http.StatusNoContent, "DELETE", path("/api/v1/blocks/%d", bob.id), nil) // idempotent
	m = e.ok(t, bob, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": alice.id})
	rid := num(t, m["request_id"])

	// A block after the request stops its acceptance by the blocked side.
	e.ok(t, bob, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", alice.id), nil)
	e.refused(t, alice, http.StatusForbidden, "blocked", "POST", path("/api/v1/friends/requests/%d/accept", rid), nil)
	e.ok(t, bob, http.StatusNoContent, "DELETE", path("/api/v1/blocks/%d", alice.id), nil)
	e.ok(t, alice, http.StatusOK, "POST", path("/api/v1/friends/requests/%d/accept", rid), nil)

	// Blocking a friend keeps the friendship.
	e.ok(t, alice, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", bob.id), nil)
	if m = e.ok(t, alice, http.StatusOK, "GET", "/api/v1/friends", nil); len(list(t, m, "friends")) != 1 {
		t.Fatalf("friends after blocking a friend: %v", m)
	}

	e.refused(t, alice, http.StatusBadRequest, "bad_request", "PUT", path("/api/v1/blocks/%d", alice.id), nil)
	e.refused(t, alice, http.StatusBadRequest, "bad_request", "DELETE", path("/api/v1/blocks/%d", alice.id), nil)
	e.refused(t, alice, http.StatusNotFound, "not_found", "PUT", "/api/v1/blocks/999999", nil)
	e.refused(t, alice, http.StatusNotFound, "not_found", "DELETE", "/api/v1/blocks/999999", nil)
	e.refused(t, alice, http.StatusBadRequest, "bad_request", "PUT", "/api/v1/blocks/x", nil)
}

func TestFriendRequestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FriendRequestLimit = 2 })
	alice := e.user(t, "alice")
	others := []tuser{e.user(t, "bob"), e.user(t, "carol"), e.user(t, "dave")}
	e.ok(t, alice, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": others[0].id})
	e.ok(t, alice, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": others[1].id})
	e.refused(t, alice, http.StatusTooManyRequests, "rate_limited", "POST", "/api/v1/friends/requests", map[string]any{"to_user": others[2].id})
	// Refusals by the table do not count, and other users have their own budget.
	e.ok(t, others[2], http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": alice.id})
	// A window later, alice may send again.
	e.svc.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	e.ok(t, alice, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": others[2].id})
}

func TestWindowLimiter(t *testing.T) {
	l := newWindowLimiter(2, time.Minute)
	t0 := time.Unix(1000, 0)
	tests := []struct {
		user int64
		at   time.Duration
		want bool
	}{
		{1, 0, true}, {1, time.Second, true}, {1, 2 * time.Second, false}, {2, 2 * time.Second, true},
		{1, 59 * time.Second, false}, {1, 61 * time.Second, true}, {1, 62 * time.Second, true}, {1, 63 * time.Second, false},
	}
	for i, tt := range tests {
		if got := l.allow(tt.user, t0.Add(tt.at)); got != tt.want {
			t.Fatalf("step %d: allow(%d, +%v) = %v, want %v", i, tt.user, tt.at, got, tt.want)
		}
	}
	// The map is swept of expired windows as it grows.
	for u := int64(10); u < 10+3*minSweep; u++ {
		l.allow(u, t0.Add(time.Duration(u)*time.Minute))
	}
	if n := len(l.users); n > 2*minSweep+1 {
		t.Fatalf("%d users tracked after sweeps, want at most %d", n, 2*minSweep+1)
	}
}

func TestFriendRequestBadInput(t *testing.T) {
	e := newEnv(t)
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	tests := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"invalid JSON", `{"to_user":`, http.StatusBadRequest, "bad_request"},
		{"not an object", `[1]`, http.StatusBadRequest, "bad_request"},
		{"string id", `{"to_user":"2"}`, http.StatusBadRequest, "bad_request"},
		{"missing to_user", `{}`, http.StatusBadRequest, "bad_request"},
		{"negative", map[string]any{"to_user": -1}, http.StatusBadRequest, "bad_request"},
		{"unknown user", map[string]any{"to_user": 999999}, http.StatusNotFound, "not_found"},
		{"yourself", map[string]any{"to_user": alice.id}, http.StatusBadRequest, "bad_request"},
		{"message too long", map[string]any{"to_user": bob.id, "message": strings.Repeat("é", maxRequestMsgLen+1)}, http.StatusBadRequest, "bad_request"},
		{"control character", map[string]any{"to_user": bob.id, "message": "a\x00b"}, http.StatusBadRequest, "bad_request"},
		{"body too large", `{"to_user":2,"message":"` + strings.Repeat("a", 2<<20) + `"}`, http.StatusRequestEntityTooLarge, "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.refused(t, alice, tt.status, tt.code, "POST", "/api/v1/friends/requests", tt.body)
		})
	}
	// A message of exactly the limit, with newlines, is fine.
	e.ok(t, alice, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": bob.id, "message": strings.Repeat("é\n", maxRequestMsgLen/2)})
	for _, p := range []string{"/api/v1/friends/requests/0/accept", "/api/v1/friends/requests/x/reject"} {
		e.refused(t, bob, http.StatusBadRequest, "bad_request", "POST", p, nil)
	}
	e.refused(t, bob, http.StatusNotFound, "not_found", "POST", "/api/v1/friends/requests/999999/accept", nil)
	e.refused(t, bob, http.StatusBadRequest, "bad_request", "GET", "/api/v1/friends?since_version=-1", nil)
	e.refused(t, bob, http.StatusBadRequest, "bad_request", "GET", "/api/v1/friends/requests?limit=abc", nil)
	e.refused(t, alice, http.StatusBadRequest, "bad_request", "PATCH", path("/api/v1/friends/%d", bob.id), map[string]any{})
	e.refused(t, alice, http.StatusBadRequest, "bad_request", "PATCH", path("/api/v1/friends/%d", bob.id), map[string]any{"remark": strings.Repeat("r", maxRemarkLen+1)})
}

package standalone

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/goimdev/goim/client"
	"github.com/goimdev/goim/protocol"
)

// nextEvent returns the body of the next Op 22 packet of c, failing after a
// deadline or if it is not of type typ (and of change, when not empty).
func nextEvent(t *testing.T, c *client.Client, typ, change string) map[string]any {
	t.Helper()
	for {
		p := next(t, c)
		if p.Op != protocol.OpEvent {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal(p.Body, &ev); err != nil {
			t.Fatalf("event body %q: %v", p.Body, err)
		}
		if ev["type"] != typ || (change != "" && ev["change"] != change) {
			t.Fatalf("got event %v, want type %s change %q", ev, typ, change)
		}
		return ev
	}
}

// TestRelationsEndToEnd drives friends, blocks and groups over HTTP with the
// SDK and checks the Op 22 events that reach connected SDK clients, on TCP
// and WebSocket.
func TestRelationsEndToEnd(t *testing.T) {
	forEachStore(t, testRelationsEndToEnd)
}

func testRelationsEndToEnd(t *testing.T, s *Server) {
	ctx := testCtx(t)
	alice, bob, carol := newUser(t, s, "ralice"), newUser(t, s, "rbob"), newUser(t, s, "rcarol")
	aTCP := dial(t, s, "tcp", alice, client.Config{Platform: "pc"})
	aWS := dial(t, s, "ws", alice, client.Config{Platform: "web"})
	b := dial(t, s, "tcp", bob, client.Config{Platform: "ios"})
	c := dial(t, s, "ws", carol, client.Config{Platform: "android"})
	as, bs, cs := s.api().WithToken(alice.token), s.api().WithToken(bob.token), s.api().WithToken(carol.token)

	// A friend request reaches bob; his acceptance reaches both of alice's
	// devices and bob.
	var sent struct {
		RequestID int64 `json:"request_id"`
	}
	if err := as.Do(ctx, "POST", "/api/v1/friends/requests", map[string]any{"to_user": bob.id, "message": "hi"}, &sent); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, b, "friend_request", "")
	if req := ev["request"].(map[string]any); req["message"] != "hi" || int64(req["from_user"].(float64)) != alice.id {
		t.Fatalf("friend_request event %v", ev)
	}
	if err := bs.Do(ctx, "POST", fmt.Sprintf("/api/v1/friends/requests/%d/accept", sent.RequestID), nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client.Client{aTCP, aWS} {
		if ev := nextEvent(t, cl, "friend_added", ""); int64(ev["friend_id"].(float64)) != bob.id {
			t.Fatalf("alice's friend_added %v", ev)
		}
	}
	if ev := nextEvent(t, b, "friend_added", ""); int64(ev["friend_id"].(float64)) != alice.id {
		t.Fatalf("bob's friend_added %v", ev)
	}
	var friends struct {
		Friends []struct {
			UserID int64 `json:"user_id"`
		} `json:"friends"`
		Version int64 `json:"version"`
		Full    bool  `json:"full"`
	}
	if err := as.Do(ctx, "GET", "/api/v1/friends", nil, &friends); err != nil || len(friends.Friends) != 1 || friends.Friends[0].UserID != bob.id || !friends.Full {
		t.Fatalf("alice's friends %+v, %v", friends, err)
	}

	// A group: every member's device hears of its creation, the kick and
	// the dismissal; the kicked user hears of his kick, not of what follows.
	var created struct {
		GroupID int64 `json:"group_id"`
	}
	if err := cs.Do(ctx, "POST", "/api/v1/groups", map[string]any{"name": "e2e", "members": []int64{alice.id, bob.id}}, &created); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client.Client{aTCP, aWS, b, c} {
		if ev := nextEvent(t, cl, "group_changed", "created"); int64(ev["group_id"].(float64)) != created.GroupID {
			t.Fatalf("created event %v", ev)
		}
	}
	g := fmt.Sprintf("/api/v1/groups/%d", created.GroupID)
	// A member may not kick; the owner may.
	var ce *client.CodeError
	if err := as.Do(ctx, "DELETE", fmt.Sprintf("%s/members/%d", g, bob.id), nil, nil); !errors.As(err, &ce) || ce.Status != http.StatusForbidden || ce.Code != "forbidden" {
		t.Fatalf("member kicking: %v", err)
	}
	if err := cs.Do(ctx, "DELETE", fmt.Sprintf("%s/members/%d", g, bob.id), nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client.Client{aTCP, aWS, b, c} {
		ev := nextEvent(t, cl, "group_changed", "member_kicked")
		if ids := ev["user_ids"].([]any); len(ids) != 1 || int64(ids[0].(float64)) != bob.id || int64(ev["by"].(float64)) != carol.id {
			t.Fatalf("member_kicked event %v", ev)
		}
	}
	if err := cs.Do(ctx, "PATCH", g, map[string]any{"announcement": "bye"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client.Client{aTCP, aWS, c} {
		if ev := nextEvent(t, cl, "group_changed", "announcement"); ev["announcement"] != "bye" {
			t.Fatalf("announcement event %v", ev)
		}
	}
	if err := cs.Do(ctx, "DELETE", g, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client.Client{aTCP, aWS, c} {
		nextEvent(t, cl, "group_changed", "dismissed")
	}
	if err := as.Do(ctx, "GET", g, nil, nil); !errors.As(err, &ce) || ce.Status != http.StatusGone || ce.Code != "group_dismissed" {
		t.Fatalf("dismissed group: %v", err)
	}

	// A block stops friend requests in its direction.
	if err := as.Do(ctx, "PUT", fmt.Sprintf("/api/v1/blocks/%d", carol.id), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := cs.Do(ctx, "POST", "/api/v1/friends/requests", map[string]any{"to_user": alice.id}, nil); !errors.As(err, &ce) || ce.Status != http.StatusForbidden || ce.Code != "blocked" {
		t.Fatalf("request to a blocker: %v", err)
	}
	// bob's first event since his kick is the unfriending, not the group's.
	if err := as.Do(ctx, "DELETE", fmt.Sprintf("/api/v1/friends/%d", bob.id), nil, nil); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, b, "friend_removed", ""); int64(ev["friend_id"].(float64)) != alice.id {
		t.Fatalf("bob's friend_removed %v", ev)
	}
	nextEvent(t, aWS, "friend_removed", "")
}

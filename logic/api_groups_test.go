package logic

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGroupFlow(t *testing.T) {
	forEachStore(t, testGroupFlow)
}

func testGroupFlow(t *testing.T, e *env) {
	owner, adm, mem, off := e.user(t, "owner"), e.user(t, "adm"), e.user(t, "mem"), e.user(t, "offline")
	out, late := e.user(t, "outsider"), e.user(t, "late")
	ko := e.online(t, owner, "phone", "comet-1")
	ka := e.online(t, adm, "phone", "comet-2")
	km := e.online(t, mem, "phone", "comet-1")
	kx := e.online(t, out, "phone", "comet-2")
	kl := e.online(t, late, "phone", "comet-1")

	// Create: every initial member hears of it, nobody else.
	m := e.ok(t, owner, http.StatusCreated, "POST", "/api/v1/groups", map[string]any{"name": "Team 🚀", "members": []int64{adm.id, mem.id, off.id, mem.id, owner.id}, "avatar": "g.png"})
	gid := num(t, m["group_id"])
	g := path("/api/v1/groups/%d", gid)
	e.wantInvalidated(t, "create", fmt.Sprintf("group %d", gid))
	got := byKey(e.events(t))
	for _, k := range []string{ko, ka, km} {
		ev := wantEvent(t, got, k, evGroupChanged, map[string]any{"change": changeCreated, "group_id": gid, "by": owner.id})
		if grp := ev["group"].(map[string]any); grp["name"] != "Team 🚀" || num(t, grp["member_count"]) != 4 {
			t.Fatalf("created event: %v", ev)
		}
	}
	if len(got[kx])+len(got[kl]) != 0 {
		t.Fatalf("events to non-members: %v", got)
	}

	// Info: public, with the caller's role for members.
	m = e.ok(t, mem, http.StatusOK, "GET", g, nil)
	if m["name"] != "Team 🚀" || m["avatar"] != "g.png" || num(t, m["owner_id"]) != owner.id || num(t, m["member_count"]) != 4 ||
		num(t, m["max_members"]) != 500 || m["mute_all"] != false || m["role"] != "member" {
		t.Fatalf("group as member: %v", m)
	}
	if m = e.ok(t, out, http.StatusOK, "GET", g, nil); m["role"] != nil || m["name"] != "Team 🚀" {
		t.Fatalf("group as outsider: %v", m)
	}
	if m = e.ok(t, owner, http.StatusOK, "GET", g, nil); m["role"] != "owner" {
		t.Fatalf("group as owner: %v", m)
	}

	// Members: owner first; outsiders refused.
	m = e.ok(t, mem, http.StatusOK, "GET", g+"/members", nil)
	ms := list(t, m, "members")
	if m["full"] != true || len(ms) != 4 || num(t, ms[0]["user_id"]) != owner.id || ms[0]["role"] != "owner" ||
		ms[0]["user"].(map[string]any)["username"] != "owner" || num(t, ms[0]["joined_at_ms"]) <= 0 {
		t.Fatalf("members: %v", m)
	}
	mv := num(t, m["version"])
	e.refused(t, out, http.StatusForbidden, "not_member", "GET", g+"/members", nil)

	// Promote adm.
	e.events(t)
	m = e.ok(t, owner, http.StatusOK, "PATCH", path("%s/members/%d", g, adm.id), map[string]any{"role": "admin"})
	if m["role"] != "admin" || num(t, m["user_id"]) != adm.id {
		t.Fatalf("promote: %v", m)
	}
	e.wantInvalidated(t, "promote", fmt.Sprintf("member %d [%d]", gid, adm.id))
	got = byKey(e.events(t))
	for _, k := range []string{ko, ka, km} {
		wantEvent(t, got, k, evGroupChanged, map[string]any{"change": changeRoleChanged, "role": "admin", "user_ids": []any{adm.id}, "by": owner.id})
	}
	m = e.ok(t, mem, http.StatusOK, "GET", path("%s/members?since_version=%d", g, mv), nil)
	if ms := list(t, m, "members"); m["full"] != false || len(ms) != 1 || num(t, ms[0]["user_id"]) != adm.id || ms[0]["role"] != "admin" {
		t.Fatalf("members since %d: %v", mv, m)
	}

	// Group settings: admins change name and announcement, only the owner max_members.
	m = e.ok(t, adm, http.StatusOK, "PATCH", g, map[string]any{"announcement": "Read the rules\nthen chat", "name": "Team 2"})
	if m["announcement"] != "Read the rules\nthen chat" || m["name"] != "Team 2" || m["role"] != "admin" {
		t.Fatalf("patch group: %v", m)
	}
	got = byKey(e.events(t))
	wantEvent(t, got, km, evGroupChanged, map[string]any{"change": changeAnnouncement, "announcement": "Read the rules\nthen chat", "by": adm.id})
	wantEvent(t, got, ko, evGroupChanged, map[string]any{"change": changeUpdated, "fields": []any{"name"}})
	e.refused(t, adm, http.StatusForbidden, "forbidden", "PATCH", g, map[string]any{"max_members": 10})
	e.refused(t, mem, http.StatusForbidden, "forbidden", "PATCH", g, map[string]any{"name": "mine"})
	e.refused(t, out, http.StatusForbidden, "not_member", "PATCH", g, map[string]any{"name": "mine"})
	e.refused(t, owner, http.StatusConflict, "conflict", "PATCH", g, map[string]any{"max_members": 3})
	e.refused(t, owner, http.StatusBadRequest, "bad_request", "PATCH", g, map[string]any{"max_members": 2001})
	m = e.ok(t, owner, http.StatusOK, "PATCH", g, map[string]any{"max_members": 6, "mute_all": true})
	if num(t, m["max_members"]) != 6 || m["mute_all"] != true {
		t.Fatalf("patch max_members: %v", m)
	}
	e.cache.take()
	wantEvent(t, byKey(e.events(t)), km, evGroupChanged, map[string]any{"change": changeUpdated, "fields": []any{"mute_all", "max_members"}})
	// Group settings changes reach each member's group list.
	m = e.ok(t, mem, http.StatusOK, "GET", "/api/v1/groups", nil)
	gl := list(t, m, "groups")
	if m["full"] != true || len(gl) != 1 || num(t, gl[0]["group_id"]) != gid || gl[0]["role"] != "member" || gl[0]["name"] != "Team 2" {
		t.Fatalf("mem's groups: %v", m)
	}
	glv := num(t, m["version"])

	// Mute and unmute.
	until := time.Now().Add(time.Hour).UnixMilli()
	m = e.ok(t, adm, http.StatusOK, "PATCH", path("%s/members/%d", g, mem.id), map[string]any{"muted_until_ms": until})
	if num(t, m["muted_until_ms"]) != until {
		t.Fatalf("mute: %v", m)
	}
	wantEvent(t, byKey(e.events(t)), km, evGroupChanged, map[string]any{"change": changeMuted, "muted_until_ms": until, "user_ids": []any{mem.id}, "by": adm.id})
	m = e.ok(t, adm, http.StatusOK, "PATCH", path("%s/members/%d", g, mem.id), map[string]any{"muted_until_ms": 0})
	if num(t, m["muted_until_ms"]) != 0 {
		t.Fatalf("unmute: %v", m)
	}
	wantEvent(t, byKey(e.events(t)), ka, evGroupChanged, map[string]any{"change": changeUnmuted, "user_ids": []any{mem.id}})
	e.refused(t, mem, http.StatusForbidden, "forbidden", "PATCH", path("%s/members/%d", g, adm.id), map[string]any{"muted_until_ms": until})
	e.refused(t, adm, http.StatusForbidden, "forbidden", "PATCH", path("%s/members/%d", g, owner.id), map[string]any{"muted_until_ms": until})

	// Nickname: a member sets his own.
	m = e.ok(t, mem, http.StatusOK, "PATCH", path("%s/members/%d", g, mem.id), map[string]any{"nickname": "Memo"})
	if m["nickname"] != "Memo" {
		t.Fatalf("nickname: %v", m)
	}
	wantEvent(t, byKey(e.events(t)), ko, evGroupChanged, map[string]any{"change": changeNickname, "nickname": "Memo"})
	e.refused(t, mem, http.StatusForbidden, "forbidden", "PATCH", path("%s/members/%d", g, adm.id), map[string]any{"nickname": "x"})

	// A combined patch is all or nothing: the role part is refused, so the
	// nickname does not change either.
	e.refused(t, adm, http.StatusForbidden, "forbidden", "PATCH", path("%s/members/%d", g, mem.id), map[string]any{"nickname": "Changed", "role": "admin"})
	m = e.ok(t, mem, http.StatusOK, "GET", g+"/members", nil)
	for _, x := range list(t, m, "members") {
		if num(t, x["user_id"]) == mem.id && x["nickname"] != "Memo" {
			t.Fatalf("refused patch changed the nickname: %v", x)
		}
	}

	// Invite (by a plain member) and join.
	e.events(t)
	m = e.ok(t, mem, http.StatusOK, "POST", g+"/members", map[string]any{"user_ids": []int64{late.id, off.id}})
	if a := m["user_ids"].([]any); len(a) != 1 || fmt.Sprint(a[0]) != fmt.Sprint(late.id) {
		t.Fatalf("invite: %v (off is already in)", m)
	}
	got = byKey(e.events(t))
	for _, k := range []string{ko, ka, km, kl} {
		wantEvent(t, got, k, evGroupChanged, map[string]any{"change": changeMemberJoined, "user_ids": []any{late.id}, "by": mem.id})
	}
	m = e.ok(t, out, http.StatusOK, "POST", g+"/members", nil)
	if a := m["user_ids"].([]any); len(a) != 1 || fmt.Sprint(a[0]) != fmt.Sprint(out.id) || num(t, m["version"]) <= mv {
		t.Fatalf("join: %v", m)
	}
	wantEvent(t, byKey(e.events(t)), kx, evGroupChanged, map[string]any{"change": changeMemberJoined, "user_ids": []any{out.id}, "by": out.id})
	e.cache.take()
	if m = e.ok(t, out, http.StatusOK, "POST", g+"/members", map[string]any{}); len(m["user_ids"].([]any)) != 0 {
		t.Fatalf("join again: %v", m)
	}
	if evs := e.events(t); len(evs) != 0 {
		t.Fatalf("a no-op join published %v", evs)
	}
	// 6 members now, max 6.
	extra := e.user(t, "extra")
	e.refused(t, extra, http.StatusConflict, "group_full", "POST", g+"/members", nil)
	e.refused(t, owner, http.StatusConflict, "group_full", "POST", g+"/members", map[string]any{"user_ids": []int64{extra.id}})

	// Kick: the kicked user hears of it too.
	e.ok(t, adm, http.StatusNoContent, "DELETE", path("%s/members/%d", g, out.id), nil)
	e.wantInvalidated(t, "kick", fmt.Sprintf("member %d [%d]", gid, out.id))
	got = byKey(e.events(t))
	for _, k := range []string{ko, ka, km, kl, kx} {
		wantEvent(t, got, k, evGroupChanged, map[string]any{"change": changeMemberKicked, "user_ids": []any{out.id}, "by": adm.id})
	}
	e.refused(t, out, http.StatusForbidden, "not_member", "GET", g+"/members", nil)
	e.refused(t, adm, http.StatusNotFound, "not_found", "DELETE", path("%s/members/%d", g, out.id), nil)
	e.refused(t, mem, http.StatusForbidden, "forbidden", "DELETE", path("%s/members/%d", g, late.id), nil)
	e.refused(t, adm, http.StatusForbidden, "forbidden", "DELETE", path("%s/members/%d", g, owner.id), nil)

	// Leave.
	e.ok(t, late, http.StatusNoContent, "DELETE", path("%s/members/%d", g, late.id), nil)
	e.wantInvalidated(t, "leave", fmt.Sprintf("member %d [%d]", gid, late.id))
	got = byKey(e.events(t))
	for _, k := range []string{ko, km, kl} {
		wantEvent(t, got, k, evGroupChanged, map[string]any{"change": changeMemberLeft, "user_ids": []any{late.id}, "by": late.id})
	}
	e.refused(t, owner, http.StatusConflict, "owner_must_transfer", "DELETE", path("%s/members/%d", g, owner.id), nil)

	// mem's group list: still one entry; the incremental list shows what changed.
	m = e.ok(t, mem, http.StatusOK, "GET", path("/api/v1/groups?since_version=%d", glv), nil)
	if m["full"] != false {
		t.Fatalf("groups since %d: %v", glv, m)
	}
	m = e.ok(t, late, http.StatusOK, "GET", "/api/v1/groups?since_version=1", nil)
	if gl := list(t, m, "groups"); m["full"] != false || len(gl) != 1 || gl[0]["deleted"] != true || num(t, gl[0]["group_id"]) != gid {
		t.Fatalf("late's groups after leaving: %v", m)
	}

	// Transfer to adm; the old owner becomes an admin.
	e.refused(t, adm, http.StatusForbidden, "forbidden", "POST", g+"/transfer", map[string]any{"user_id": adm.id})
	e.refused(t, owner, http.StatusNotFound, "not_found", "POST", g+"/transfer", map[string]any{"user_id": late.id})
	m = e.ok(t, owner, http.StatusOK, "POST", g+"/transfer", map[string]any{"user_id": adm.id})
	if num(t, m["owner_id"]) != adm.id || m["role"] != "admin" {
		t.Fatalf("transfer: %v", m)
	}
	e.wantInvalidated(t, "transfer", fmt.Sprintf("group %d", gid))
	got = byKey(e.events(t))
	wantEvent(t, got, km, evGroupChanged, map[string]any{"change": changeOwnerTransferred, "user_ids": []any{adm.id}, "by": owner.id})
	if m = e.ok(t, owner, http.StatusOK, "GET", g, nil); m["role"] != "admin" {
		t.Fatalf("old owner: %v", m)
	}
	e.ok(t, owner, http.StatusNoContent, "DELETE", path("%s/members/%d", g, owner.id), nil) // may leave now

	// Dismiss: only the (new) owner; every member hears of it.
	e.refused(t, mem, http.StatusForbidden, "forbidden", "DELETE", g, nil)
	e.events(t)
	e.cache.take()
	e.ok(t, adm, http.StatusNoContent, "DELETE", g, nil)
	e.wantInvalidated(t, "dismiss", fmt.Sprintf("group %d", gid))
	got = byKey(e.events(t))
	for _, k := range []string{ka, km} {
		wantEvent(t, got, k, evGroupChanged, map[string]any{"change": changeDismissed, "by": adm.id})
	}
	if len(got[ko]) != 0 {
		t.Fatalf("the member who left hears of the dismissal: %v", got[ko])
	}
	for _, req := range []struct{ method, path string }{{"GET", g}, {"GET", g + "/members"}, {"DELETE", g}, {"PATCH", g}, {"POST", g + "/members"}} {
		var body any
		if req.method == "PATCH" {
			body = map[string]any{"name": "x"}
		}
		e.refused(t, adm, http.StatusGone, "group_dismissed", req.method, req.path, body)
	}
	m = e.ok(t, mem, http.StatusOK, "GET", "/api/v1/groups", nil)
	if len(list(t, m, "groups")) != 0 {
		t.Fatalf("mem's groups after dismissal: %v", m)
	}
	m = e.ok(t, mem, http.StatusOK, "GET", path("/api/v1/groups?since_version=%d", glv), nil)
	if gl := list(t, m, "groups"); len(gl) != 1 || gl[0]["deleted"] != true {
		t.Fatalf("mem's groups since %d after dismissal: %v", glv, m)
	}
	e.refused(t, mem, http.StatusNotFound, "not_found", "GET", "/api/v1/groups/999999", nil)
}

func TestGroupLimits(t *testing.T) {
	forEachStore(t, testGroupLimits, func(c *Config) { c.DefaultMaxMembers = 4; c.MaxMembersCeiling = 6 })
}

func testGroupLimits(t *testing.T, e *env) {
	u := make([]tuser, 8)
	ids := make([]int64, len(u))
	for i := range u {
		u[i] = e.user(t, fmt.Sprintf("user%d", i))
		ids[i] = u[i].id
	}
	owner := u[0]
	// Default max 4 including the owner.
	e.refused(t, owner, http.StatusConflict, "group_full", "POST", "/api/v1/groups", map[string]any{"name": "g", "members": ids[1:5]})
	m := e.ok(t, owner, http.StatusCreated, "POST", "/api/v1/groups", map[string]any{"name": "g", "members": ids[1:4]})
	if m = e.ok(t, owner, http.StatusOK, "GET", path("/api/v1/groups/%d", num(t, m["group_id"])), nil); num(t, m["max_members"]) != 4 {
		t.Fatalf("default max_members: %v", m)
	}
	// Up to the ceiling.
	e.refused(t, owner, http.StatusBadRequest, "bad_request", "POST", "/api/v1/groups", map[string]any{"name": "g", "max_members": 7})
	e.refused(t, owner, http.StatusBadRequest, "bad_request", "POST", "/api/v1/groups", map[string]any{"name": "g", "members": ids[1:8]})
	m = e.ok(t, owner, http.StatusCreated, "POST", "/api/v1/groups", map[string]any{"name": "g", "max_members": 6, "members": ids[1:6]})
	g := path("/api/v1/groups/%d", num(t, m["group_id"]))
	e.refused(t, u[6], http.StatusConflict, "group_full", "POST", g+"/members", nil)
	e.refused(t, owner, http.StatusConflict, "group_full", "POST", g+"/members", map[string]any{"user_ids": ids[6:8]})
	e.refused(t, owner, http.StatusConflict, "conflict", "PATCH", g, map[string]any{"max_members": 5})
	e.ok(t, u[1], http.StatusNoContent, "DELETE", path("%s/members/%d", g, u[1].id), nil)
	e.ok(t, owner, http.StatusOK, "PATCH", g, map[string]any{"max_members": 5})
	e.refused(t, u[6], http.StatusConflict, "group_full", "POST", g+"/members", nil)
}

func TestGroupBadInput(t *testing.T) {
	e := newEnv(t)
	owner, mem := e.user(t, "owner"), e.user(t, "mem")
	gid := e.newGroup(t, owner, mem)
	g := path("/api/v1/groups/%d", gid)
	tests := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", "/api/v1/groups", `{"name":`, http.StatusBadRequest, "bad_request"},
		{"POST", "/api/v1/groups", map[string]any{"name": ""}, http.StatusBadRequest, "bad_request"},
		{"POST", "/api/v1/groups", map[string]any{"name": "   "}, http.StatusBadRequest, "bad_request"},
		{"POST", "/api/v1/groups", map[string]any{"name": strings.Repeat("n", maxGroupNameLen+1)}, http.StatusBadRequest, "bad_request"},
		{"POST", "/api/v1/groups", map[string]any{"name": "g", "avatar": strings.Repeat("a", 1025)}, http.StatusBadRequest, "bad_request"},
		{"POST", "/api/v1/groups", map[string]any{"name": "g", "members": []any{"x"}}, http.StatusBadRequest, "bad_request"},
		{"POST", "/api/v1/groups", map[string]any{"name": "g", "members": []int64{0}}, http.StatusBadRequest, "bad_request"},
		{"POST", "/api/v1/groups", map[string]any{"name": "g", "members": []int64{999999}}, http.StatusNotFound, "not_found"},
		{"POST", "/api/v1/groups", map[string]any{"name": "g", "max_members": 0}, http.StatusBadRequest, "bad_request"},
		{"GET", "/api/v1/groups/abc", nil, http.StatusBadRequest, "bad_request"},
		{"GET", "/api/v1/groups/999999", nil, http.StatusNotFound, "not_found"},
		{"GET", "/api/v1/groups?since_version=x", nil, http.StatusBadRequest, "bad_request"},
		{"GET", g + "/members?since_version=-2", nil, http.StatusBadRequest, "bad_request"},
		{"PATCH", g, map[string]any{}, http.StatusBadRequest, "bad_request"},
		{"PATCH", g, `[]`, http.StatusBadRequest, "bad_request"},
		{"PATCH", g, map[string]any{"announcement": strings.Repeat("a", maxAnnouncementLen+1)}, http.StatusBadRequest, "bad_request"},
		{"PATCH", g, map[string]any{"name": strings.Repeat("n", maxGroupNameLen+1)}, http.StatusBadRequest, "bad_request"},
		{"PATCH", g, map[string]any{"mute_all": "yes"}, http.StatusBadRequest, "bad_request"},
		{"PATCH", "/api/v1/groups/999999", map[string]any{"name": "x"}, http.StatusNotFound, "not_found"},
		{"DELETE", "/api/v1/groups/999999", nil, http.StatusNotFound, "not_found"},
		{"POST", g + "/members", `{"user_ids": [1,`, http.StatusBadRequest, "bad_request"},
		{"POST", g + "/members", `"x"`, http.StatusBadRequest, "bad_request"},
		{"POST", g + "/members", map[string]any{"user_ids": []int64{-4}}, http.StatusBadRequest, "bad_request"},
		{"POST", g + "/members", map[string]any{"user_ids": []int64{999999}}, http.StatusNotFound, "not_found"},
		{"POST", "/api/v1/groups/999999/members", nil, http.StatusNotFound, "not_found"},
		{"DELETE", g + "/members/x", nil, http.StatusBadRequest, "bad_request"},
		{"DELETE", g + "/members/999999", nil, http.StatusNotFound, "not_found"},
		{"PATCH", g + "/members/" + mem.ids(), map[string]any{}, http.StatusBadRequest, "bad_request"},
		{"PATCH", g + "/members/" + mem.ids(), map[string]any{"role": "owner"}, http.StatusBadRequest, "bad_request"},
		{"PATCH", g + "/members/" + mem.ids(), map[string]any{"role": "boss"}, http.StatusBadRequest, "bad_request"},
		{"PATCH", g + "/members/" + mem.ids(), map[string]any{"muted_until_ms": -1}, http.StatusBadRequest, "bad_request"},
		{"PATCH", g + "/members/" + mem.ids(), map[string]any{"muted_until_ms": int64(maxMutedUntilMS) + 1}, http.StatusBadRequest, "bad_request"},
		{"PATCH", g + "/members/" + mem.ids(), map[string]any{"nickname": strings.Repeat("n", maxMemberNickLen+1)}, http.StatusBadRequest, "bad_request"},
		{"PATCH", g + "/members/999999", map[string]any{"nickname": "x"}, http.StatusNotFound, "not_found"},
		{"POST", g + "/transfer", map[string]any{}, http.StatusBadRequest, "bad_request"},
		{"POST", g + "/transfer", map[string]any{"user_id": 999999}, http.StatusNotFound, "not_found"},
		{"POST", g + "/transfer", `{"user_id": 1.5}`, http.StatusBadRequest, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			e.refused(t, owner, tt.status, tt.code, tt.method, tt.path, tt.body)
		})
	}
	// Nothing was changed by the refusals.
	m := e.ok(t, owner, http.StatusOK, "GET", g+"/members", nil)
	if got := idsOf(t, list(t, m, "members"), "user_id"); !slices.Equal(got, []int64{owner.id, mem.id}) {
		t.Fatalf("members after bad input: %v", got)
	}
	if m = e.ok(t, owner, http.StatusOK, "GET", "/api/v1/groups", nil); len(list(t, m, "groups")) != 1 {
		t.Fatalf("groups after bad input: %v", m)
	}
}

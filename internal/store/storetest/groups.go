package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/store"
)

// groupTests are the group and member tests.
var groupTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"CreateGroup", testCreateGroup},
	{"CreateGroupInvalid", testCreateGroupInvalid},
	{"UpdateGroup", testUpdateGroup},
	{"AddMembers", testAddMembers},
	{"RemoveMember", testRemoveMember},
	{"UpdateMember", testUpdateMember},
	{"TransferOwnership", testTransferOwnership},
	{"DismissGroup", testDismissGroup},
	{"GroupChanges", testGroupChanges},
	{"UnknownGroup", testUnknownGroup},
	{"ConcurrentAddMembers", testConcurrentAddMembers},
}

func memberDelta(items []store.Member) []int64 {
	out := make([]int64, len(items))
	for i, m := range items {
		out[i] = m.UserID
		if m.Deleted {
			out[i] = -m.UserID
		}
	}
	return out
}

func groupDelta(items []store.UserGroup) []int64 {
	out := make([]int64, len(items))
	for i, g := range items {
		out[i] = g.GroupID
		if g.Deleted {
			out[i] = -g.GroupID
		}
	}
	return out
}

func memberChanges(t *testing.T, s store.Store, groupID, since int64) store.Changes[store.Member] {
	t.Helper()
	ch, err := s.MemberChanges(ctx(t), groupID, since)
	if err != nil {
		t.Fatalf("MemberChanges(%d, %d): %v", groupID, since, err)
	}
	for i, m := range ch.Items {
		if m.GroupID != groupID || m.Version > ch.Version || (!ch.Full && m.Version <= since) || (ch.Full && m.Deleted) {
			t.Fatalf("MemberChanges(%d, %d) = version %d, full %v, bad item %+v", groupID, since, ch.Version, ch.Full, m)
		}
		if i > 0 && !ch.Full && m.Version < ch.Items[i-1].Version {
			t.Fatalf("MemberChanges(%d, %d): items not in version order", groupID, since)
		}
	}
	return ch
}

func userGroupChanges(t *testing.T, s store.Store, userID, since int64) store.Changes[store.UserGroup] {
	t.Helper()
	ch, err := s.UserGroupChanges(ctx(t), userID, since)
	if err != nil {
		t.Fatalf("UserGroupChanges(%d, %d): %v", userID, since, err)
	}
	for i, g := range ch.Items {
		if g.Version > ch.Version || (!ch.Full && g.Version <= since) || (ch.Full && g.Deleted) {
			t.Fatalf("UserGroupChanges(%d, %d) = version %d, full %v, bad item %+v", userID, since, ch.Version, ch.Full, g)
		}
		if i > 0 && !ch.Full && g.Version < ch.Items[i-1].Version {
			t.Fatalf("UserGroupChanges(%d, %d): items not in version order", userID, since)
		}
	}
	return ch
}

func mustGroup(t *testing.T, s store.Store, owner int64, maxMembers int, members ...int64) int64 {
	t.Helper()
	id, err := s.CreateGroup(ctx(t), &store.Group{OwnerID: owner, Name: fmt.Sprint("group of ", owner), MaxMembers: maxMembers}, members)
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	return id
}

func getGroup(t *testing.T, s store.Store, id int64) *store.Group {
	t.Helper()
	g, err := s.Group(ctx(t), id)
	if err != nil {
		t.Fatalf("Group(%d): %v", id, err)
	}
	return g
}

func memberIDs(t *testing.T, s store.Store, groupID int64, want ...int64) {
	t.Helper()
	got, err := s.MemberIDs(ctx(t), groupID)
	if err != nil {
		t.Fatalf("MemberIDs(%d): %v", groupID, err)
	}
	if !slices.Equal(got, sorted(want)) {
		t.Fatalf("MemberIDs(%d) = %v, want %v", groupID, got, sorted(want))
	}
	if g := getGroup(t, s, groupID); g.MemberCount != len(want) {
		t.Fatalf("MemberCount = %d, want %d", g.MemberCount, len(want))
	}
}

func role(t *testing.T, s store.Store, groupID, userID int64) store.Role {
	t.Helper()
	m, err := s.Member(ctx(t), groupID, userID)
	if err != nil {
		t.Fatalf("Member(%d, %d): %v", groupID, userID, err)
	}
	if m.GroupID != groupID || m.UserID != userID || m.Deleted {
		t.Fatalf("Member(%d, %d) = %+v", groupID, userID, m)
	}
	return m.Role
}

func testCreateGroup(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "cg", 4)
	owner, m1, m2, out := u[0], u[1], u[2], u[3]
	before := time.Now().Add(-time.Second)
	g := &store.Group{OwnerID: owner, Name: "Team 团队", Avatar: "https://x/g.png", Announcement: "welcome", MaxMembers: 3, MuteAll: true}
	id, err := s.CreateGroup(c, g, []int64{m1, m2, m2, owner})
	if err != nil {
		t.Fatal(err)
	}
	if id <= 0 || g.ID != id || g.MemberCount != 3 || g.Version <= 0 || g.CreatedAt.Before(before) {
		t.Fatalf("CreateGroup set %+v", g)
	}
	got := getGroup(t, s, id)
	want := *g
	if got.ID != want.ID || got.OwnerID != owner || got.Name != want.Name || got.Avatar != want.Avatar ||
		got.Announcement != want.Announcement || got.MaxMembers != 3 || !got.MuteAll || got.Dismissed ||
		got.MemberCount != 3 || got.Version != g.Version || !got.CreatedAt.Equal(g.CreatedAt) {
		t.Fatalf("Group = %+v, want %+v", got, want)
	}
	memberIDs(t, s, id, owner, m1, m2)
	for user, want := range map[int64]store.Role{owner: store.RoleOwner, m1: store.RoleMember, m2: store.RoleMember} {
		if r := role(t, s, id, user); r != want {
			t.Fatalf("role of %d = %d, want %d", user, r, want)
		}
	}
	if _, err := s.Member(c, id, out); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Member(outsider) = %v", err)
	}
	ch := memberChanges(t, s, id, 0)
	checkChanges(t, "members of a new group", true, ch.Full, memberDelta(ch.Items), []int64{owner, m1, m2})
	if ch.Items[0].UserID != owner || ch.Version != g.Version {
		t.Fatalf("full member list = %+v (owner first), version %d, want %d", ch.Items, ch.Version, g.Version)
	}
	for _, user := range []int64{owner, m1, m2} {
		gch := userGroupChanges(t, s, user, 0)
		checkChanges(t, "a member's groups", true, gch.Full, groupDelta(gch.Items), []int64{id})
	}
	if gch := userGroupChanges(t, s, out, 0); len(gch.Items) != 0 {
		t.Fatalf("an outsider's groups = %+v", gch.Items)
	}
	// A group of just its owner.
	solo := mustGroup(t, s, out, 1)
	memberIDs(t, s, solo, out)
	if gch := userGroupChanges(t, s, out, 0); !slices.Equal(groupDelta(gch.Items), []int64{solo}) {
		t.Fatalf("the solo owner's groups = %+v", gch.Items)
	}
}

func testCreateGroupInvalid(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "cgi", 3)
	owner, m := u[0], u[1]
	ok := func(mod func(g *store.Group)) *store.Group {
		g := &store.Group{OwnerID: owner, Name: "ok", MaxMembers: 10}
		mod(g)
		return g
	}
	tests := []struct {
		name    string
		g       *store.Group
		members []int64
		want    error
	}{
		{"nil", nil, nil, store.ErrInvalid},
		{"empty name", ok(func(g *store.Group) { g.Name = "" }), nil, store.ErrInvalid},
		{"long name", ok(func(g *store.Group) { g.Name = strings.Repeat("n", store.MaxGroupNameLen+1) }), nil, store.ErrInvalid},
		{"bad utf8 name", ok(func(g *store.Group) { g.Name = "\xff" }), nil, store.ErrInvalid},
		{"long avatar", ok(func(g *store.Group) { g.Avatar = strings.Repeat("a", store.MaxAvatarLen+1) }), nil, store.ErrInvalid},
		{"long announcement", ok(func(g *store.Group) { g.Announcement = strings.Repeat("a", store.MaxAnnouncementLen+1) }), nil, store.ErrInvalid},
		{"zero max members", ok(func(g *store.Group) { g.MaxMembers = 0 }), nil, store.ErrInvalid},
		{"negative max members", ok(func(g *store.Group) { g.MaxMembers = -3 }), nil, store.ErrInvalid},
		{"unknown owner", ok(func(g *store.Group) { g.OwnerID = owner + 1000 }), nil, store.ErrNotFound},
		{"unknown member", ok(func(*store.Group) {}), []int64{m, owner + 1000}, store.ErrNotFound},
		{"too many members", ok(func(g *store.Group) { g.MaxMembers = 2 }), u[1:3], store.ErrGroupFull},
		{"owner alone over max", ok(func(g *store.Group) { g.MaxMembers = 1 }), []int64{m}, store.ErrGroupFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.CreateGroup(c, tt.g, tt.members); !errors.Is(err, tt.want) {
				t.Fatalf("CreateGroup = %v, want %v", err, tt.want)
			}
		})
	}
	// Nothing was stored: nobody is in a group.
	for _, user := range u {
		if gch := userGroupChanges(t, s, user, 0); len(gch.Items) != 0 || gch.Version != 0 {
			t.Fatalf("after refused creations user %d has groups %+v (version %d)", user, gch.Items, gch.Version)
		}
	}
	// At the limits.
	g := &store.Group{OwnerID: owner, Name: strings.Repeat("名", store.MaxGroupNameLen/3), Avatar: strings.Repeat("a", store.MaxAvatarLen),
		Announcement: strings.Repeat("a", store.MaxAnnouncementLen), MaxMembers: 3}
	id, err := s.CreateGroup(c, g, u[1:3])
	if err != nil {
		t.Fatalf("a group at every limit: %v", err)
	}
	memberIDs(t, s, id, u...)
}

func testUpdateGroup(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "ug", 3)
	owner, m := u[0], u[1]
	id := mustGroup(t, s, owner, 5, m)
	str := func(v string) *string { return &v }
	boolp := func(v bool) *bool { return &v }
	intp := func(v int) *int { return &v }
	type fields struct {
		name, avatar, ann string
		muteAll           bool
		maxMembers        int
	}
	cur := fields{"group of " + fmt.Sprint(owner), "", "", false, 5}
	steps := []struct {
		name string
		u    store.GroupUpdate
		want error
		set  func(f *fields)
	}{
		{"name", store.GroupUpdate{Name: str("renamed")}, nil, func(f *fields) { f.name = "renamed" }},
		{"avatar and announcement", store.GroupUpdate{Avatar: str("https://x/a.png"), Announcement: str("公告")}, nil,
			func(f *fields) { f.avatar, f.ann = "https://x/a.png", "公告" }},
		{"mute all", store.GroupUpdate{MuteAll: boolp(true)}, nil, func(f *fields) { f.muteAll = true }},
		{"unmute all", store.GroupUpdate{MuteAll: boolp(false)}, nil, func(f *fields) { f.muteAll = false }},
		{"clear announcement", store.GroupUpdate{Announcement: str("")}, nil, func(f *fields) { f.ann = "" }},
		{"max members", store.GroupUpdate{MaxMembers: intp(50)}, nil, func(f *fields) { f.maxMembers = 50 }},
		{"max members to the count", store.GroupUpdate{MaxMembers: intp(2)}, nil, func(f *fields) { f.maxMembers = 2 }},
		{"max members below the count", store.GroupUpdate{MaxMembers: intp(1)}, store.ErrConflict, nil},
		{"zero max members", store.GroupUpdate{MaxMembers: intp(0)}, store.ErrInvalid, nil},
		{"empty name", store.GroupUpdate{Name: str("")}, store.ErrInvalid, nil},
		{"long name", store.GroupUpdate{Name: str(strings.Repeat("n", store.MaxGroupNameLen+1))}, store.ErrInvalid, nil},
		{"long avatar", store.GroupUpdate{Avatar: str(strings.Repeat("a", store.MaxAvatarLen+1))}, store.ErrInvalid, nil},
		{"long announcement", store.GroupUpdate{Announcement: str(strings.Repeat("a", store.MaxAnnouncementLen+1))}, store.ErrInvalid, nil},
		{"nothing", store.GroupUpdate{}, nil, func(*fields) {}},
	}
	for _, st := range steps {
		mv := memberChanges(t, s, id, 0).Version
		gv := map[int64]int64{owner: userGroupChanges(t, s, owner, 0).Version, m: userGroupChanges(t, s, m, 0).Version}
		err := s.UpdateGroup(c, id, st.u)
		if !errors.Is(err, st.want) {
			t.Fatalf("%s: UpdateGroup = %v, want %v", st.name, err, st.want)
		}
		changed := err == nil && st.u != (store.GroupUpdate{})
		if err == nil {
			st.set(&cur)
		}
		g := getGroup(t, s, id)
		if got := (fields{g.Name, g.Avatar, g.Announcement, g.MuteAll, g.MaxMembers}); got != cur {
			t.Fatalf("%s: group fields %+v, want %+v", st.name, got, cur)
		}
		if g.Version != mv || g.MemberCount != 2 {
			t.Fatalf("%s: an info change moved the member list: version %d -> %d, count %d", st.name, mv, g.Version, g.MemberCount)
		}
		// An info change reappears in every member's group list.
		for user, v := range gv {
			ch := userGroupChanges(t, s, user, v)
			var want []int64
			if changed {
				want = []int64{id}
			}
			checkChanges(t, st.name+": member's group changes", false, ch.Full, groupDelta(ch.Items), want)
		}
	}
}

func testAddMembers(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "am", 7)
	owner, m1, m2, m3, a1, extra, late := u[0], u[1], u[2], u[3], u[4], u[5], u[6]
	id := mustGroup(t, s, owner, 6, m1)
	tests := []struct {
		name  string
		users []int64
		role  store.Role
		added []int64
		want  error
	}{
		{"new, duplicate and existing", []int64{m2, m1, m3, m2, owner}, store.RoleMember, []int64{m2, m3}, nil},
		{"all existing", []int64{m1, m2}, store.RoleMember, nil, nil},
		{"nobody", nil, store.RoleMember, nil, nil},
		{"unknown user among known", []int64{extra, late + 1000}, store.RoleMember, nil, store.ErrNotFound},
		{"as admin", []int64{a1}, store.RoleAdmin, []int64{a1}, nil},
		{"owner role", []int64{extra}, store.RoleOwner, nil, store.ErrInvalid},
		{"unknown role", []int64{extra}, store.Role(7), nil, store.ErrInvalid},
		{"over max", []int64{extra, late}, store.RoleMember, nil, store.ErrGroupFull},
		{"exactly to max", []int64{m1, extra}, store.RoleMember, []int64{extra}, nil},
		{"full", []int64{late}, store.RoleMember, nil, store.ErrGroupFull},
	}
	members := []int64{owner, m1}
	for _, tt := range tests {
		v := getGroup(t, s, id).Version
		added, err := s.AddMembers(c, id, tt.users, tt.role)
		if !errors.Is(err, tt.want) {
			t.Fatalf("%s: AddMembers = %v, want %v", tt.name, err, tt.want)
		}
		if !slices.Equal(added, tt.added) {
			t.Fatalf("%s: added %v, want %v", tt.name, added, tt.added)
		}
		members = append(members, tt.added...)
		memberIDs(t, s, id, members...)
		ch := memberChanges(t, s, id, v)
		checkChanges(t, tt.name+": member changes", false, ch.Full, memberDelta(ch.Items), tt.added)
		for _, user := range tt.added {
			if r := role(t, s, id, user); r != tt.role {
				t.Fatalf("%s: role of %d = %d, want %d", tt.name, user, r, tt.role)
			}
			if gch := userGroupChanges(t, s, user, 0); !slices.Contains(groupDelta(gch.Items), id) {
				t.Fatalf("%s: the group is not in %d's list: %+v", tt.name, user, gch.Items)
			}
		}
	}
	for _, user := range []int64{late} {
		if gch := userGroupChanges(t, s, user, 0); len(gch.Items) != 0 {
			t.Fatalf("a refused member has groups %+v", gch.Items)
		}
	}
	// A former member rejoins with a fresh membership.
	mute := time.Now().Add(time.Hour)
	nick := "old nick"
	admin := store.RoleAdmin
	if err := s.UpdateMember(c, id, m3, store.MemberUpdate{Role: &admin, Nickname: &nick, MutedUntil: &mute}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveMember(c, id, m3); err != nil {
		t.Fatal(err)
	}
	if added, err := s.AddMembers(c, id, []int64{m3}, store.RoleMember); err != nil || !slices.Equal(added, []int64{m3}) {
		t.Fatalf("rejoining: %v, %v", added, err)
	}
	mem, err := s.Member(c, id, m3)
	if err != nil || mem.Role != store.RoleMember || mem.Nickname != "" || !mem.MutedUntil.IsZero() || mem.Deleted {
		t.Fatalf("a rejoined member = %+v, %v", mem, err)
	}
	if _, err := s.AddMembers(c, id+1000, []int64{late}, store.RoleMember); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AddMembers(unknown group) = %v", err)
	}
}

func testRemoveMember(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "rm", 4)
	owner, m1, m2, out := u[0], u[1], u[2], u[3]
	id := mustGroup(t, s, owner, 10, m1, m2)
	mv := getGroup(t, s, id).Version
	gv := userGroupChanges(t, s, m1, 0).Version
	if err := s.RemoveMember(c, id, m1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Member(c, id, m1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Member after removal = %v", err)
	}
	memberIDs(t, s, id, owner, m2)
	ch := memberChanges(t, s, id, mv)
	checkChanges(t, "member changes after removal", false, ch.Full, memberDelta(ch.Items), []int64{-m1})
	full := memberChanges(t, s, id, 0)
	checkChanges(t, "members after removal", true, full.Full, memberDelta(full.Items), []int64{owner, m2})
	gch := userGroupChanges(t, s, m1, gv)
	checkChanges(t, "the removed member's groups", false, gch.Full, groupDelta(gch.Items), []int64{-id})
	if gfull := userGroupChanges(t, s, m1, 0); len(gfull.Items) != 0 {
		t.Fatalf("the removed member's full group list = %+v", gfull.Items)
	}
	if gch := userGroupChanges(t, s, m2, 0); !slices.Equal(groupDelta(gch.Items), []int64{id}) {
		t.Fatalf("another member's groups = %+v", gch.Items)
	}
	for _, tt := range []struct {
		group, user int64
		want        error
	}{
		{id, m1, store.ErrNotFound},
		{id, out, store.ErrNotFound},
		{id, out + 1000, store.ErrNotFound},
		{id, owner, store.ErrConflict},
		{id + 1000, m2, store.ErrNotFound},
	} {
		if err := s.RemoveMember(c, tt.group, tt.user); !errors.Is(err, tt.want) {
			t.Fatalf("RemoveMember(%d, %d) = %v, want %v", tt.group, tt.user, err, tt.want)
		}
	}
	memberIDs(t, s, id, owner, m2)
}

func testUpdateMember(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "um", 3)
	owner, m, out := u[0], u[1], u[2]
	id := mustGroup(t, s, owner, 10, m)
	admin, member, ownerRole, badRole := store.RoleAdmin, store.RoleMember, store.RoleOwner, store.Role(9)
	nick := func(v string) *string { return &v }
	until := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	zero := time.Time{}
	type state struct {
		role  store.Role
		nick  string
		muted time.Time
	}
	cur := state{store.RoleMember, "", time.Time{}}
	tests := []struct {
		name string
		user int64
		u    store.MemberUpdate
		want error
		set  func(*state)
	}{
		{"make admin", m, store.MemberUpdate{Role: &admin}, nil, func(s *state) { s.role = admin }},
		{"nickname", m, store.MemberUpdate{Nickname: nick("小明")}, nil, func(s *state) { s.nick = "小明" }},
		{"mute", m, store.MemberUpdate{MutedUntil: &until}, nil, func(s *state) { s.muted = until }},
		{"everything", m, store.MemberUpdate{Role: &member, Nickname: nick(strings.Repeat("n", store.MaxMemberNickLen))}, nil,
			func(s *state) { s.role, s.nick = member, strings.Repeat("n", store.MaxMemberNickLen) }},
		{"unmute", m, store.MemberUpdate{MutedUntil: &zero}, nil, func(s *state) { s.muted = time.Time{} }},
		{"nothing", m, store.MemberUpdate{}, nil, func(*state) {}},
		{"role owner", m, store.MemberUpdate{Role: &ownerRole}, store.ErrInvalid, nil},
		{"unknown role", m, store.MemberUpdate{Role: &badRole}, store.ErrInvalid, nil},
		{"long nickname", m, store.MemberUpdate{Nickname: nick(strings.Repeat("n", store.MaxMemberNickLen+1))}, store.ErrInvalid, nil},
		{"owner's role", owner, store.MemberUpdate{Role: &member}, store.ErrConflict, nil},
		{"not a member", out, store.MemberUpdate{Nickname: nick("x")}, store.ErrNotFound, nil},
		{"unknown user", out + 1000, store.MemberUpdate{Nickname: nick("x")}, store.ErrNotFound, nil},
	}
	for _, tt := range tests {
		v := getGroup(t, s, id).Version
		err := s.UpdateMember(c, id, tt.user, tt.u)
		if !errors.Is(err, tt.want) {
			t.Fatalf("%s: UpdateMember = %v, want %v", tt.name, err, tt.want)
		}
		if err == nil {
			tt.set(&cur)
		}
		got, err := s.Member(c, id, m)
		if err != nil {
			t.Fatal(err)
		}
		if g := (state{got.Role, got.Nickname, got.MutedUntil}); g.role != cur.role || g.nick != cur.nick || !g.muted.Equal(cur.muted) {
			t.Fatalf("%s: member %+v, want %+v", tt.name, g, cur)
		}
		var want []int64
		if tt.want == nil && tt.u != (store.MemberUpdate{}) {
			want = []int64{tt.user}
		}
		ch := memberChanges(t, s, id, v)
		checkChanges(t, tt.name+": member changes", false, ch.Full, memberDelta(ch.Items), want)
	}
	// The owner may be muted and nicknamed (rules are the domain's).
	if err := s.UpdateMember(c, id, owner, store.MemberUpdate{Nickname: nick("boss"), MutedUntil: &until}); err != nil {
		t.Fatal(err)
	}
	if o, err := s.Member(c, id, owner); err != nil || o.Role != store.RoleOwner || o.Nickname != "boss" || !o.MutedUntil.Equal(until) {
		t.Fatalf("owner after update = %+v, %v", o, err)
	}
}

func testTransferOwnership(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "to", 4)
	owner, m, a, out := u[0], u[1], u[2], u[3]
	id := mustGroup(t, s, owner, 10, m, a)
	admin := store.RoleAdmin
	if err := s.UpdateMember(c, id, a, store.MemberUpdate{Role: &admin}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		group, user int64
		want        error
	}{
		{id, out, store.ErrNotFound},
		{id, out + 1000, store.ErrNotFound},
		{id + 1000, m, store.ErrNotFound},
	} {
		if err := s.TransferOwnership(c, tt.group, tt.user); !errors.Is(err, tt.want) {
			t.Fatalf("TransferOwnership(%d, %d) = %v, want %v", tt.group, tt.user, err, tt.want)
		}
	}
	v := getGroup(t, s, id).Version
	if err := s.TransferOwnership(c, id, owner); err != nil {
		t.Fatalf("transfer to the owner: %v", err)
	}
	if g := getGroup(t, s, id); g.OwnerID != owner || g.Version != v {
		t.Fatalf("a transfer to the owner changed %+v", g)
	}
	if err := s.TransferOwnership(c, id, m); err != nil {
		t.Fatal(err)
	}
	g := getGroup(t, s, id)
	if g.OwnerID != m {
		t.Fatalf("owner after transfer = %d, want %d", g.OwnerID, m)
	}
	for user, want := range map[int64]store.Role{m: store.RoleOwner, owner: store.RoleAdmin, a: store.RoleAdmin} {
		if r := role(t, s, id, user); r != want {
			t.Fatalf("role of %d after transfer = %d, want %d", user, r, want)
		}
	}
	ch := memberChanges(t, s, id, v)
	checkChanges(t, "member changes after transfer", false, ch.Full, memberDelta(ch.Items), []int64{owner, m})
	full := memberChanges(t, s, id, 0)
	if full.Items[0].UserID != m {
		t.Fatalf("full member list does not start with the new owner: %+v", full.Items)
	}
	// The old owner is an ordinary admin now; the new one is protected.
	if err := s.RemoveMember(c, id, m); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("removing the new owner = %v, want ErrConflict", err)
	}
	if err := s.RemoveMember(c, id, owner); err != nil {
		t.Fatalf("removing the old owner: %v", err)
	}
	memberIDs(t, s, id, m, a)
}

func testDismissGroup(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "dg", 4)
	owner, m1, m2, gone := u[0], u[1], u[2], u[3]
	id := mustGroup(t, s, owner, 10, m1, m2, gone)
	other := mustGroup(t, s, m1, 10, m2)
	if err := s.RemoveMember(c, id, gone); err != nil {
		t.Fatal(err)
	}
	mv := getGroup(t, s, id).Version
	gv := map[int64]int64{}
	for _, user := range u {
		gv[user] = userGroupChanges(t, s, user, 0).Version
	}
	if err := s.DismissGroup(c, id); err != nil {
		t.Fatal(err)
	}
	g := getGroup(t, s, id)
	if !g.Dismissed || g.MemberCount != 0 || g.OwnerID != owner || g.Version <= mv {
		t.Fatalf("dismissed group = %+v", g)
	}
	if ids, err := s.MemberIDs(c, id); err != nil || len(ids) != 0 {
		t.Fatalf("MemberIDs(dismissed) = %v, %v", ids, err)
	}
	for _, user := range []int64{owner, m1, m2} {
		if _, err := s.Member(c, id, user); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Member(%d) of a dismissed group = %v", user, err)
		}
		gch := userGroupChanges(t, s, user, gv[user])
		checkChanges(t, "groups after dismissal", false, gch.Full, groupDelta(gch.Items), []int64{-id})
		full := userGroupChanges(t, s, user, 0)
		if slices.Contains(groupDelta(full.Items), id) {
			t.Fatalf("user %d's full group list still has the dismissed group", user)
		}
	}
	// The member who had left already gets nothing new.
	if gch := userGroupChanges(t, s, gone, gv[gone]); len(gch.Items) != 0 {
		t.Fatalf("a former member's group changes after dismissal: %+v", gch.Items)
	}
	ch := memberChanges(t, s, id, mv)
	checkChanges(t, "member changes after dismissal", false, ch.Full, memberDelta(ch.Items), []int64{-owner, -m1, -m2})
	if full := memberChanges(t, s, id, 0); len(full.Items) != 0 {
		t.Fatalf("full member list of a dismissed group = %+v", full.Items)
	}
	// Another group is untouched.
	memberIDs(t, s, other, m1, m2)
	// Every change to a dismissed group is refused.
	name := "x"
	admin := store.RoleAdmin
	for what, err := range map[string]error{
		"UpdateGroup":       s.UpdateGroup(c, id, store.GroupUpdate{Name: &name}),
		"DismissGroup":      s.DismissGroup(c, id),
		"AddMembers":        func() error { _, err := s.AddMembers(c, id, []int64{gone}, store.RoleMember); return err }(),
		"RemoveMember":      s.RemoveMember(c, id, m1),
		"UpdateMember":      s.UpdateMember(c, id, m1, store.MemberUpdate{Role: &admin}),
		"TransferOwnership": s.TransferOwnership(c, id, m1),
	} {
		if !errors.Is(err, store.ErrGroupDismissed) {
			t.Errorf("%s on a dismissed group = %v, want ErrGroupDismissed", what, err)
		}
	}
	if g2 := getGroup(t, s, id); g2.Name != g.Name || g2.Version != g.Version {
		t.Fatalf("a refused change altered the dismissed group: %+v", g2)
	}
}

func testGroupChanges(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "gc", 4)
	owner, a, b, x := u[0], u[1], u[2], u[3]
	id := mustGroup(t, s, owner, 10)
	v := []int64{getGroup(t, s, id).Version}
	step := func(f func() error) {
		t.Helper()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		v = append(v, getGroup(t, s, id).Version)
	}
	step(func() error { _, err := s.AddMembers(c, id, []int64{a, b}, store.RoleMember); return err })
	step(func() error { return s.RemoveMember(c, id, a) })
	step(func() error { nick := "bee"; return s.UpdateMember(c, id, b, store.MemberUpdate{Nickname: &nick}) })
	for i := 1; i < len(v); i++ {
		if v[i] <= v[i-1] {
			t.Fatalf("member-list versions %v are not strictly increasing", v)
		}
	}
	cur := v[len(v)-1]
	tests := []struct {
		name  string
		since int64
		full  bool
		want  []int64
	}{
		{"since 0", 0, true, []int64{owner, b}},
		{"since creation", v[0], false, []int64{-a, b}},
		{"since the additions", v[1], false, []int64{-a, b}},
		{"since the removal", v[2], false, []int64{b}},
		{"since current", cur, false, nil},
		{"ahead", cur + 1, true, []int64{owner, b}},
	}
	for _, tt := range tests {
		ch := memberChanges(t, s, id, tt.since)
		checkChanges(t, "members "+tt.name, tt.full, ch.Full, memberDelta(ch.Items), tt.want)
		if ch.Version != cur {
			t.Fatalf("members %s: Version %d, want %d", tt.name, ch.Version, cur)
		}
	}
	// x's group list: joins two groups, leaves one.
	g1 := mustGroup(t, s, owner, 10, x)
	g2 := mustGroup(t, s, a, 10, x)
	xv := userGroupChanges(t, s, x, 0).Version
	if err := s.RemoveMember(c, g1, x); err != nil {
		t.Fatal(err)
	}
	xcur := userGroupChanges(t, s, x, 0).Version
	for _, tt := range []struct {
		name  string
		since int64
		full  bool
		want  []int64
	}{
		{"since 0", 0, true, []int64{g2}},
		{"since both joins", xv, false, []int64{-g1}},
		{"since the first join", xv - 1, false, []int64{g2, -g1}},
		{"since current", xcur, false, nil},
		{"ahead", xcur + 5, true, []int64{g2}},
	} {
		ch := userGroupChanges(t, s, x, tt.since)
		checkChanges(t, "x's groups "+tt.name, tt.full, ch.Full, groupDelta(ch.Items), tt.want)
		if ch.Version != xcur {
			t.Fatalf("x's groups %s: Version %d, want %d", tt.name, ch.Version, xcur)
		}
	}
	if ch := userGroupChanges(t, s, x+1000, 3); !ch.Full || len(ch.Items) != 0 || ch.Version != 0 {
		t.Fatalf("groups of an unknown user = %+v", ch)
	}
}

func testUnknownGroup(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "unk", 2)
	id := mustGroup(t, s, u[0], 10, u[1])
	name := "x"
	for _, gid := range []int64{id + 1000, 0, -1} {
		for what, err := range map[string]error{
			"Group":             func() error { _, err := s.Group(c, gid); return err }(),
			"UpdateGroup":       s.UpdateGroup(c, gid, store.GroupUpdate{Name: &name}),
			"DismissGroup":      s.DismissGroup(c, gid),
			"AddMembers":        func() error { _, err := s.AddMembers(c, gid, u, store.RoleMember); return err }(),
			"RemoveMember":      s.RemoveMember(c, gid, u[1]),
			"UpdateMember":      s.UpdateMember(c, gid, u[1], store.MemberUpdate{Nickname: &name}),
			"TransferOwnership": s.TransferOwnership(c, gid, u[1]),
			"Member":            func() error { _, err := s.Member(c, gid, u[1]); return err }(),
			"MemberChanges":     func() error { _, err := s.MemberChanges(c, gid, 0); return err }(),
			"MemberIDs":         func() error { _, err := s.MemberIDs(c, gid); return err }(),
		} {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s(group %d) = %v, want ErrNotFound", what, gid, err)
			}
		}
	}
	memberIDs(t, s, id, u...)
}

func testConcurrentAddMembers(t *testing.T, s store.Store) {
	c := ctx(t)
	const maxMembers, candidates = 10, 24
	u := users(t, s, "cam", 1+candidates)
	owner := u[0]
	id := mustGroup(t, s, owner, maxMembers)
	var wg sync.WaitGroup
	errs := make([]error, candidates)
	added := make([][]int64, candidates)
	for i := range candidates {
		// Each adds itself and, for overlap, the next candidate.
		batch := []int64{u[1+i]}
		if i%3 == 0 {
			batch = append(batch, u[1+(i+1)%candidates])
		}
		wg.Go(func() { added[i], errs[i] = s.AddMembers(c, id, batch, store.RoleMember) })
	}
	wg.Wait()
	total := 0
	seen := map[int64]bool{}
	for i, err := range errs {
		switch {
		case err == nil:
			for _, a := range added[i] {
				if seen[a] {
					t.Fatalf("user %d added twice", a)
				}
				seen[a] = true
			}
			total += len(added[i])
		case !errors.Is(err, store.ErrGroupFull):
			t.Fatalf("concurrent AddMembers: %v", err)
		}
	}
	ids, err := s.MemberIDs(c, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) > maxMembers || len(ids) != 1+total {
		t.Fatalf("%d members after concurrent adds (%d reported added), max %d", len(ids), total, maxMembers)
	}
	if len(ids) < maxMembers-1 {
		// Single adds keep succeeding while there is room: at most one
		// two-user batch can be refused for lack of one place.
		t.Fatalf("only %d members after %d concurrent adds", len(ids), candidates)
	}
	g := getGroup(t, s, id)
	if g.MemberCount != len(ids) {
		t.Fatalf("MemberCount %d, members %d", g.MemberCount, len(ids))
	}
	full := memberChanges(t, s, id, 0)
	if len(full.Items) != len(ids) {
		t.Fatalf("full member list has %d rows, MemberIDs %d", len(full.Items), len(ids))
	}
}

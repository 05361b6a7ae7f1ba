package logic

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPermissionTable performs, for every row of the permission table, the
// real HTTP request as an actor with that relation to a target with that
// relation, and checks that it is allowed or refused as the row says. Rows
// whose target is "*" are run for every target relation without a row of
// its own.
func TestPermissionTable(t *testing.T) {
	forEachStore(t, testPermissionTable)
}

func testPermissionTable(t *testing.T, e *env) {
	fx := newPermFixture(t, e)
	specs := make(map[Action]actionSpec)
	for _, s := range actionSpecs {
		specs[s.Action] = s
	}
	ran := 0
	for _, r := range permissionRules {
		exec, ok := permExecutors[r.Action]
		if !ok {
			t.Fatalf("no executor for action %s", r.Action)
		}
		targets := []Rel{r.Target}
		if r.Target == RelAny {
			targets = nil
			for _, tg := range specs[r.Action].Targets {
				if _, explicit := rules[ruleKey{r.Action, r.Actor, tg}]; !explicit && possible(r.Action, r.Actor, tg) {
					targets = append(targets, tg)
				}
			}
		}
		for _, target := range targets {
			t.Run(fmt.Sprintf("%s/%s/%s", r.Action, r.Actor, target), func(t *testing.T) {
				st, m := exec(t, fx, r.Actor, target)
				if r.Allow {
					if st < 200 || st > 299 {
						t.Fatalf("allowed by the table, answered %d %v (row: %s)", st, m, r.Note)
					}
					return
				}
				if st != r.Status || m["code"] != r.Code {
					t.Fatalf("refused by the table with %d %s, answered %d %v", r.Status, r.Code, st, m)
				}
				if m["message"] != r.Note {
					t.Fatalf("refusal message %q, want the row's %q", m["message"], r.Note)
				}
			})
			ran++
		}
	}
	if ran < len(permissionRules) {
		t.Fatalf("ran %d cases for %d rows", ran, len(permissionRules))
	}
}

// TestPermissionTableComplete proves that every possible combination of
// actor and target relation of every action has a rule, and that every rule
// belongs to its action's domain.
func TestPermissionTableComplete(t *testing.T) {
	specs := make(map[Action]actionSpec)
	for _, s := range actionSpecs {
		if _, dup := specs[s.Action]; dup {
			t.Fatalf("action %s specified twice", s.Action)
		}
		specs[s.Action] = s
		for _, actor := range s.Actors {
			for _, target := range s.Targets {
				if !possible(s.Action, actor, target) {
					continue
				}
				if _, ok := lookupRule(s.Action, actor, target); !ok {
					t.Errorf("no rule for %s by %s on %s", s.Action, actor, target)
				}
			}
		}
		if _, ok := permExecutors[s.Action]; !ok {
			t.Errorf("action %s has no executor in the row-by-row test", s.Action)
		}
	}
	for _, r := range permissionRules {
		s, ok := specs[r.Action]
		switch {
		case !ok:
			t.Errorf("rule for unspecified action %s", r.Action)
		case !slices.Contains(s.Actors, r.Actor):
			t.Errorf("rule %s: actor %s outside the action's actors %v", r.Action, r.Actor, s.Actors)
		case r.Target != RelAny && !slices.Contains(s.Targets, r.Target):
			t.Errorf("rule %s by %s: target %s outside the action's targets %v", r.Action, r.Actor, r.Target, s.Targets)
		case r.Allow != (r.Code == "") || r.Allow != (r.Status == 0):
			t.Errorf("rule %s by %s on %s: allow %v with refusal %d %q", r.Action, r.Actor, r.Target, r.Allow, r.Status, r.Code)
		case !r.Allow && r.Note == "":
			t.Errorf("rule %s by %s on %s: refusal without a message", r.Action, r.Actor, r.Target)
		}
	}
	// Fail closed: a combination without a rule is refused.
	if err := authorize(ActGroupDismiss, RelSender, RelNone); err == nil {
		t.Fatal("authorize allowed a combination without a rule")
	}
}

const (
	docBegin = "<!-- BEGIN permission table: generated from logic/permissions.go by permissionsMarkdown; run GOIM_UPDATE_DOCS=1 go test ./logic -run TestPermissionsDoc -->"
	docEnd   = "<!-- END permission table -->"
)

// TestPermissionsDoc keeps docs/permissions.md's table equal to the code's.
func TestPermissionsDoc(t *testing.T) {
	p := filepath.Join("..", "docs", "permissions.md")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, docBegin), strings.Index(doc, docEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no generated table between %q and %q", p, docBegin, docEnd)
	}
	want := docBegin + "\n\n" + permissionsMarkdown() + "\n" + docEnd
	if doc[i:j+len(docEnd)] == want {
		return
	}
	if os.Getenv("GOIM_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(p, []byte(doc[:i]+want+doc[j+len(docEnd):]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated %s", p)
		return
	}
	t.Fatalf("%s's permission table differs from permissionRules: run GOIM_UPDATE_DOCS=1 go test ./logic -run TestPermissionsDoc", p)
}

// permFixture holds the users of the row-by-row test: a group is made
// fresh for each row with owner O, admins A1 and A2, members M1 and M2;
// N1 and N2 are not members. Users for friend rows are made fresh.
type permFixture struct {
	e                         *env
	O, A1, A2, M1, M2, N1, N2 tuser
	n                         int
}

func newPermFixture(t *testing.T, e *env) *permFixture {
	fx := &permFixture{e: e}
	fx.O, fx.A1, fx.A2 = e.user(t, "powner"), e.user(t, "padmin1"), e.user(t, "padmin2")
	fx.M1, fx.M2, fx.N1, fx.N2 = e.user(t, "pmember1"), e.user(t, "pmember2"), e.user(t, "pnon1"), e.user(t, "pnon2")
	return fx
}

func (fx *permFixture) fresh(t *testing.T) tuser {
	fx.n++
	return fx.e.user(t, fmt.Sprintf("fresh%d", fx.n))
}

// group makes the row's group and returns its path.
func (fx *permFixture) group(t *testing.T) string {
	gid := fx.e.newGroup(t, fx.O, fx.A1, fx.A2, fx.M1, fx.M2)
	g := path("/api/v1/groups/%d", gid)
	for _, a := range []tuser{fx.A1, fx.A2} {
		fx.e.ok(t, fx.O, http.StatusOK, "PATCH", path("%s/members/%d", g, a.id), map[string]any{"role": "admin"})
	}
	return g
}

// actor is the user with a group relation.
func (fx *permFixture) actor(rel Rel) tuser {
	switch rel {
	case RelOwner:
		return fx.O
	case RelAdmin:
		return fx.A1
	case RelMember:
		return fx.M1
	}
	return fx.N1
}

// member is the user with a target relation to actor.
func (fx *permFixture) member(actor, target Rel) tuser {
	switch target {
	case RelSelf:
		return fx.actor(actor)
	case RelOwner:
		return fx.O
	case RelAdmin:
		if actor == RelAdmin {
			return fx.A2
		}
		return fx.A1
	case RelMember:
		if actor == RelMember {
			return fx.M2
		}
		return fx.M1
	}
	return fx.N2
}

// block makes who block whom until the end of the row.
func (fx *permFixture) block(t *testing.T, who, whom tuser) {
	fx.e.ok(t, who, http.StatusNoContent, "PUT", path("/api/v1/blocks/%d", whom.id), nil)
	t.Cleanup(func() {
		st, m := fx.e.call(t, who, "DELETE", path("/api/v1/blocks/%d", whom.id), nil)
		if st != http.StatusNoContent {
			t.Errorf("unblock: %d %v", st, m)
		}
	})
}

type permExecutor func(t *testing.T, fx *permFixture, actor, target Rel) (int, map[string]any)

// groupAction runs one request on a fresh group as the actor, on the
// target member when the path has a %d.
func groupAction(method, suffix string, body func(target tuser) any) permExecutor {
	return func(t *testing.T, fx *permFixture, actor, target Rel) (int, map[string]any) {
		g := fx.group(t)
		tu := fx.member(actor, target)
		p := g + suffix
		if strings.Contains(suffix, "%d") {
			p = g + fmt.Sprintf(suffix, tu.id)
		}
		var b any
		if body != nil {
			b = body(tu)
		}
		return fx.e.call(t, fx.actor(actor), method, p, b)
	}
}

// requestAction runs accept or reject of a request from S to R by the actor.
func requestAction(verb string) permExecutor {
	return func(t *testing.T, fx *permFixture, actor, target Rel) (int, map[string]any) {
		s, r, x := fx.fresh(t), fx.fresh(t), fx.fresh(t)
		m := fx.e.ok(t, s, http.StatusOK, "POST", "/api/v1/friends/requests", map[string]any{"to_user": r.id})
		if target == RelBlocker {
			fx.block(t, s, r)
		}
		who := map[Rel]tuser{RelRecipient: r, RelSender: s, RelThird: x}[actor]
		return fx.e.call(t, who, "POST", path("/api/v1/friends/requests/%d/%s", num(t, m["request_id"]), verb), nil)
	}
}

// friendAction runs a request on the friend list entry of T by U.
func friendAction(method string, body any) permExecutor {
	return func(t *testing.T, fx *permFixture, _, target Rel) (int, map[string]any) {
		u, tu := fx.fresh(t), fx.fresh(t)
		if target == RelFriend {
			fx.e.befriend(t, u, tu)
		}
		return fx.e.call(t, u, method, path("/api/v1/friends/%d", tu.id), body)
	}
}

func blockAction(method string) permExecutor {
	return func(t *testing.T, fx *permFixture, _, target Rel) (int, map[string]any) {
		u := fx.fresh(t)
		tu := fx.O
		if target == RelSelf {
			tu = u
		}
		return fx.e.call(t, u, method, path("/api/v1/blocks/%d", tu.id), nil)
	}
}

// permExecutors perform each action for the row-by-row test.
var permExecutors = map[Action]permExecutor{
	ActProfileRead: func(t *testing.T, fx *permFixture, _, target Rel) (int, map[string]any) {
		u := fx.fresh(t)
		tu := fx.O
		if target == RelSelf {
			tu = u
		}
		return fx.e.call(t, u, "GET", path("/api/v1/users/%d", tu.id), nil)
	},
	ActProfileUpdate: func(t *testing.T, fx *permFixture, _, _ Rel) (int, map[string]any) {
		return fx.e.call(t, fx.fresh(t), "PATCH", "/api/v1/users/me", map[string]any{"nickname": "New Name"})
	},
	ActDevicesList: func(t *testing.T, fx *permFixture, _, _ Rel) (int, map[string]any) {
		return fx.e.call(t, fx.fresh(t), "GET", "/api/v1/users/me/devices", nil)
	},
	ActFriendRequest: func(t *testing.T, fx *permFixture, _, target Rel) (int, map[string]any) {
		u, tu := fx.fresh(t), fx.fresh(t)
		switch target {
		case RelSelf:
			tu = u
		case RelBlocker:
			fx.block(t, tu, u)
		case RelBlocked:
			fx.block(t, u, tu)
		case RelFriend:
			fx.e.befriend(t, u, tu)
		}
		return fx.e.call(t, u, "POST", "/api/v1/friends/requests", map[string]any{"to_user": tu.id, "message": "hello"})
	},
	ActRequestAccept: requestAction("accept"),
	ActRequestReject: requestAction("reject"),
	ActFriendRemark:  friendAction("PATCH", map[string]any{"remark": "pal"}),
	ActFriendDelete:  friendAction("DELETE", nil),
	ActBlockAdd:      blockAction("PUT"),
	ActBlockRemove:   blockAction("DELETE"),
	ActGroupCreate: func(t *testing.T, fx *permFixture, _, target Rel) (int, map[string]any) {
		u, tu := fx.fresh(t), fx.fresh(t)
		if target == RelBlocker {
			fx.block(t, tu, u)
		}
		return fx.e.call(t, u, "POST", "/api/v1/groups", map[string]any{"name": "new", "members": []int64{tu.id}})
	},
	ActGroupRead:       groupAction("GET", "", nil),
	ActGroupUpdate:     groupAction("PATCH", "", func(tuser) any { return map[string]any{"name": "renamed", "announcement": "news", "mute_all": true} }),
	ActGroupMaxMembers: groupAction("PATCH", "", func(tuser) any { return map[string]any{"max_members": 100} }),
	ActGroupDismiss:    groupAction("DELETE", "", nil),
	ActGroupMembers:    groupAction("GET", "/members", nil),
	ActGroupInvite: func(t *testing.T, fx *permFixture, actor, target Rel) (int, map[string]any) {
		g := fx.group(t)
		invitee := fx.fresh(t)
		if target == RelBlocker {
			fx.block(t, invitee, fx.actor(actor))
		}
		return fx.e.call(t, fx.actor(actor), "POST", g+"/members", map[string]any{"user_ids": []int64{invitee.id}})
	},
	ActGroupJoin: func(t *testing.T, fx *permFixture, actor, target Rel) (int, map[string]any) {
		g := fx.group(t)
		if target == RelBlocker {
			fx.block(t, fx.O, fx.actor(actor))
		}
		return fx.e.call(t, fx.actor(actor), "POST", g+"/members", nil)
	},
	ActGroupLeave: func(t *testing.T, fx *permFixture, actor, _ Rel) (int, map[string]any) {
		g := fx.group(t)
		a := fx.actor(actor)
		return fx.e.call(t, a, "DELETE", path("%s/members/%d", g, a.id), nil)
	},
	ActGroupKick: groupAction("DELETE", "/members/%d", nil),
	ActGroupSetRole: groupAction("PATCH", "/members/%d", func(tu tuser) any {
		return map[string]any{"role": "admin"}
	}),
	ActGroupMute: groupAction("PATCH", "/members/%d", func(tuser) any {
		return map[string]any{"muted_until_ms": time.Now().Add(time.Hour).UnixMilli()}
	}),
	ActGroupNickname: groupAction("PATCH", "/members/%d", func(tuser) any { return map[string]any{"nickname": "nick"} }),
	ActGroupTransfer: groupAction("POST", "/transfer", func(tu tuser) any { return map[string]any{"user_id": tu.id} }),
}

// TestPermissionPolicy pins the rules the issue states, independently of
// how the table is written: a change of the table that breaks one of them
// fails here even though the row-by-row test (which reads the table) would
// follow it.
func TestPermissionPolicy(t *testing.T) {
	tests := []struct {
		name          string
		action        Action
		actor, target Rel
		allow         bool
		code          string
	}{
		{"non-owner dismiss (admin)", ActGroupDismiss, RelAdmin, RelNone, false, "forbidden"},
		{"non-owner dismiss (member)", ActGroupDismiss, RelMember, RelNone, false, "forbidden"},
		{"owner dismisses", ActGroupDismiss, RelOwner, RelNone, true, ""},
		{"member kicking admin", ActGroupKick, RelMember, RelAdmin, false, "forbidden"},
		{"member kicking member", ActGroupKick, RelMember, RelMember, false, "forbidden"},
		{"admin kicking owner", ActGroupKick, RelAdmin, RelOwner, false, "forbidden"},
		{"admin kicking admin", ActGroupKick, RelAdmin, RelAdmin, false, "forbidden"},
		{"admin kicks members", ActGroupKick, RelAdmin, RelMember, true, ""},
		{"owner kicks admins", ActGroupKick, RelOwner, RelAdmin, true, ""},
		{"owner kicks members", ActGroupKick, RelOwner, RelMember, true, ""},
		{"member muting", ActGroupMute, RelMember, RelMember, false, "forbidden"},
		{"admin mutes members", ActGroupMute, RelAdmin, RelMember, true, ""},
		{"admin mutes admin", ActGroupMute, RelAdmin, RelAdmin, false, "forbidden"},
		{"owner mutes admins", ActGroupMute, RelOwner, RelAdmin, true, ""},
		{"owner mutes himself", ActGroupMute, RelOwner, RelSelf, false, "forbidden"},
		{"non-member reading members", ActGroupMembers, RelNonMember, RelNone, false, "not_member"},
		{"non-member updating", ActGroupUpdate, RelNonMember, RelNone, false, "not_member"},
		{"non-member inviting", ActGroupInvite, RelNonMember, RelOther, false, "not_member"},
		{"request to a blocker", ActFriendRequest, RelUser, RelBlocker, false, "blocked"},
		{"request to yourself", ActFriendRequest, RelUser, RelSelf, false, "bad_request"},
		{"request to a friend", ActFriendRequest, RelUser, RelFriend, false, "already_friends"},
		{"accepting someone else's request", ActRequestAccept, RelThird, RelStranger, false, "forbidden"},
		{"accepting your own request", ActRequestAccept, RelSender, RelStranger, false, "forbidden"},
		{"rejecting someone else's request", ActRequestReject, RelThird, RelNone, false, "forbidden"},
		{"recipient accepts", ActRequestAccept, RelRecipient, RelStranger, true, ""},
		{"set admin: owner only", ActGroupSetRole, RelAdmin, RelMember, false, "forbidden"},
		{"owner sets admin", ActGroupSetRole, RelOwner, RelMember, true, ""},
		{"transfer: owner only", ActGroupTransfer, RelAdmin, RelMember, false, "forbidden"},
		{"owner leaving", ActGroupLeave, RelOwner, RelNone, false, "owner_must_transfer"},
		{"member leaves", ActGroupLeave, RelMember, RelNone, true, ""},
		{"max members: owner only", ActGroupMaxMembers, RelAdmin, RelNone, false, "forbidden"},
		{"admin updates announcement", ActGroupUpdate, RelAdmin, RelNone, true, ""},
		{"member updates announcement", ActGroupUpdate, RelMember, RelNone, false, "forbidden"},
		{"member's own nickname", ActGroupNickname, RelMember, RelSelf, true, ""},
		{"member's nickname of another", ActGroupNickname, RelMember, RelMember, false, "forbidden"},
		{"admin sets a member's nickname", ActGroupNickname, RelAdmin, RelMember, true, ""},
	}
	for _, tt := range tests {
		err := authorize(tt.action, tt.actor, tt.target)
		if tt.allow {
			if err != nil {
				t.Errorf("%s: refused: %v", tt.name, err)
			}
			continue
		}
		ae, ok := err.(*apiError)
		if !ok || ae.code != tt.code {
			t.Errorf("%s: got %v, want a refusal with code %s", tt.name, err, tt.code)
		}
	}
}

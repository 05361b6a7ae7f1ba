package logic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzRelationBodies sends arbitrary bodies to every relation endpoint that
// reads one: whatever the input, the answer is a 2xx or a 4xx with a JSON
// {"code","message"}, never a 5xx.
func FuzzRelationBodies(f *testing.F) {
	seeds := []string{
		``, `{}`, `[]`, `null`, `"x"`, `{"to_user":2,"message":"hi"}`, `{"to_user":"2"}`, `{"remark":"r"}`,
		`{"name":"g","members":[2,3],"max_members":10}`, `{"name":"g","members":[-1]}`, `{"user_ids":[2]}`,
		`{"user_ids":[1e30]}`, `{"role":"admin","muted_until_ms":1,"nickname":"n"}`, `{"muted_until_ms":-5}`,
		`{"announcement":"a\u0000b"}`, `{"mute_all":true,"max_members":1}`, `{"user_id":2}`, `{"nickname":"\xff"}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	e := newEnv(f)
	owner, otok := e.signupTB(f, "owner")
	mem, _ := e.signupTB(f, "mem")
	gid := e.createGroupTB(f, otok, mem)
	endpoints := []struct{ method, path string }{
		{"PATCH", "/api/v1/users/me"},
		{"POST", "/api/v1/friends/requests"},
		{"PATCH", fmt.Sprintf("/api/v1/friends/%d", mem)},
		{"POST", "/api/v1/groups"},
		{"PATCH", fmt.Sprintf("/api/v1/groups/%d", gid)},
		{"POST", fmt.Sprintf("/api/v1/groups/%d/members", gid)},
		{"PATCH", fmt.Sprintf("/api/v1/groups/%d/members/%d", gid, mem)},
		{"PATCH", fmt.Sprintf("/api/v1/groups/%d/members/%d", gid, owner)},
		{"POST", fmt.Sprintf("/api/v1/groups/%d/transfer", gid)},
	}
	h := e.svc.Handler()
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		ep := endpoints[int(which)%len(endpoints)]
		req := httptest.NewRequest(ep.method, ep.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+otok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", ep.method, ep.path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var m map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m["code"] == "" || m["message"] == "" {
				t.Fatalf("%s %s %q: error answer %q", ep.method, ep.path, body, rec.Body)
			}
		}
	})
}

// signupTB registers and logs in a user (for fuzz setup).
func (e *env) signupTB(tb testing.TB, name string) (int64, string) {
	tb.Helper()
	h := e.svc.Handler()
	post := func(path, body string) map[string]any {
		req := httptest.NewRequest("POST", path, bytes.NewBufferString(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 300 {
			tb.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			tb.Fatal(err)
		}
		return m
	}
	post("/api/v1/auth/register", fmt.Sprintf(`{"username":%q,"password":"password-%s"}`, name, name))
	m := post("/api/v1/auth/login", fmt.Sprintf(`{"username":%q,"password":"password-%s"}`, name, name))
	return int64(m["user_id"].(float64)), m["token"].(string)
}

func (e *env) createGroupTB(tb testing.TB, tok string, members ...int64) int64 {
	tb.Helper()
	b, _ := json.Marshal(map[string]any{"name": "fuzz", "members": members})
	req := httptest.NewRequest("POST", "/api/v1/groups", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	e.svc.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		tb.Fatalf("create group: %d %s", rec.Code, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		tb.Fatal(err)
	}
	return int64(m["group_id"].(float64))
}

package logic

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestUpdateProfile(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	m := e.ok(t, alice, http.StatusOK, "PATCH", "/api/v1/users/me", map[string]any{"nickname": "Alice 🌸", "avatar": "https://cdn.example/a.png"})
	if m["nickname"] != "Alice 🌸" || m["avatar"] != "https://cdn.example/a.png" || m["username"] != "alice" || num(t, m["user_id"]) != alice.id {
		t.Fatalf("patch me: %v", m)
	}
	// Only the given fields change.
	m = e.ok(t, alice, http.StatusOK, "PATCH", "/api/v1/users/me", map[string]any{"avatar": ""})
	if m["nickname"] != "Alice 🌸" || m["avatar"] != "" {
		t.Fatalf("patch avatar only: %v", m)
	}
	// Others see the change.
	if m = e.ok(t, bob, http.StatusOK, "GET", path("/api/v1/users/%d", alice.id), nil); m["nickname"] != "Alice 🌸" {
		t.Fatalf("alice seen by bob: %v", m)
	}
	tests := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"nothing", map[string]any{}, http.StatusBadRequest, "bad_request"},
		{"empty nickname", map[string]any{"nickname": ""}, http.StatusBadRequest, "bad_request"},
		{"long nickname", map[string]any{"nickname": strings.Repeat("n", maxNicknameLen+1)}, http.StatusBadRequest, "bad_request"},
		{"control nickname", map[string]any{"nickname": "a\nb"}, http.StatusBadRequest, "bad_request"},
		{"long avatar", map[string]any{"avatar": strings.Repeat("a", maxAvatarBytes+1)}, http.StatusBadRequest, "bad_request"},
		{"wrong type", `{"nickname": 3}`, http.StatusBadRequest, "bad_request"},
		{"invalid JSON", `{"nickname"`, http.StatusBadRequest, "bad_request"},
	}
	for _, tt := range tests {
		e.refused(t, alice, tt.status, tt.code, "PATCH", "/api/v1/users/me", tt.body)
	}
	st, m := e.do(t, "PATCH", "/api/v1/users/me", map[string]any{"nickname": "x"})
	wantErr(t, "patch me without token", st, m, http.StatusUnauthorized, "unauthorized")
	if m = e.ok(t, alice, http.StatusOK, "GET", "/api/v1/users/me", nil); m["nickname"] != "Alice 🌸" {
		t.Fatalf("refused patches changed the profile: %v", m)
	}
}

func TestMyDevices(t *testing.T) {
	e := newEnv(t)
	alice := e.user(t, "alice") // logged in as dev-alice
	e.svc.now = func() time.Time { return time.Now().Add(time.Minute) }
	st, m := e.do(t, "POST", "/api/v1/auth/login", map[string]any{"username": "alice", "password": "password-alice", "device_id": "tablet-1", "platform": "android"})
	if st != http.StatusOK {
		t.Fatalf("login: %d %v", st, m)
	}
	tablet := tuser{id: alice.id, tok: m["token"].(string), name: "alice"}
	m = e.ok(t, tablet, http.StatusOK, "GET", "/api/v1/users/me/devices", nil)
	devs := list(t, m, "devices")
	if len(devs) != 2 || devs[0]["device_id"] != "tablet-1" || devs[0]["platform"] != "android" || devs[0]["current"] != true ||
		devs[1]["device_id"] != "dev-alice" || devs[1]["current"] != false || num(t, devs[1]["last_login_at_ms"]) <= 0 {
		t.Fatalf("devices seen from the tablet: %v", m)
	}
	m = e.ok(t, alice, http.StatusOK, "GET", "/api/v1/users/me/devices", nil)
	if devs := list(t, m, "devices"); devs[1]["current"] != true || devs[0]["current"] != false {
		t.Fatalf("devices seen from the first device: %v", m)
	}
	bob := e.user(t, "bob")
	if m = e.ok(t, bob, http.StatusOK, "GET", "/api/v1/users/me/devices", nil); len(list(t, m, "devices")) != 1 {
		t.Fatalf("bob sees %v", m)
	}
	st, m = e.do(t, "GET", "/api/v1/users/me/devices", nil)
	wantErr(t, "devices without token", st, m, http.StatusUnauthorized, "unauthorized")
}

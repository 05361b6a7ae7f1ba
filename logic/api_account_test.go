package logic

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/store"
)

func TestRegisterLoginMe(t *testing.T) {
	e := newEnv(t)
	st, m := e.do(t, "POST", "/api/v1/auth/register", map[string]any{"username": "Alice", "password": "correct horse", "nickname": "Alice A.", "extra": true})
	if st != http.StatusCreated {
		t.Fatalf("register: %d %v", st, m)
	}
	uid := num(t, m["user_id"])
	if uid <= 0 {
		t.Fatalf("user_id %d", uid)
	}
	before := time.Now()
	st, m = e.do(t, "POST", "/api/v1/auth/login", map[string]any{"username": "alice", "password": "correct horse", "device_id": "phone-1", "platform": "iOS"})
	if st != http.StatusOK {
		t.Fatalf("login: %d %v", st, m)
	}
	if num(t, m["user_id"]) != uid {
		t.Fatalf("login user_id %v, want %d", m["user_id"], uid)
	}
	exp := time.UnixMilli(num(t, m["expires_at_ms"]))
	if d := exp.Sub(before); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour+time.Minute {
		t.Fatalf("token expires in %v, want the default 7 days", d)
	}
	tok := m["token"].(string)
	claims, err := e.issuer.Verify(tok)
	if err != nil || claims.UserID != uid || claims.DeviceID != "phone-1" {
		t.Fatalf("login token: %+v, %v", claims, err)
	}
	// The device is recorded.
	devs, err := e.svc.store.Devices(context.Background(), uid)
	if err != nil || len(devs) != 1 || devs[0].DeviceID != "phone-1" || devs[0].Platform != "ios" {
		t.Fatalf("devices after login: %+v, %v", devs, err)
	}

	st, m = e.do(t, "GET", "/api/v1/users/me", nil, bearer(tok)...)
	if st != http.StatusOK {
		t.Fatalf("me: %d %v", st, m)
	}
	if num(t, m["user_id"]) != uid || m["username"] != "alice" || m["nickname"] != "Alice A." || m["avatar"] != "" {
		t.Fatalf("me = %v", m)
	}
	created := time.UnixMilli(num(t, m["created_at_ms"]))
	if time.Since(created) > time.Minute || time.Since(created) < -time.Minute {
		t.Fatalf("created_at_ms %v not recent", created)
	}

	bobID, _ := e.signup(t, "bob")
	st, m = e.do(t, "GET", "/api/v1/users/"+strconv.FormatInt(bobID, 10), nil, bearer(tok)...)
	if st != http.StatusOK || num(t, m["user_id"]) != bobID || m["username"] != "bob" || m["nickname"] != "bob" {
		t.Fatalf("users/{bob}: %d %v (nickname defaults to the username)", st, m)
	}
	for _, p := range []string{"/api/v1/users/999999", "/api/v1/users/" + strconv.FormatInt(bobID+1, 10)} {
		st, m = e.do(t, "GET", p, nil, bearer(tok)...)
		wantErr(t, p, st, m, http.StatusNotFound, "not_found")
	}
	for _, p := range []string{"/api/v1/users/abc", "/api/v1/users/0", "/api/v1/users/-3", "/api/v1/users/99999999999999999999"} {
		st, m = e.do(t, "GET", p, nil, bearer(tok)...)
		wantErr(t, p, st, m, http.StatusBadRequest, "bad_request")
	}

	// A second login without a device id gets a generated one.
	st, m = e.do(t, "POST", "/api/v1/auth/login", map[string]any{"username": "alice", "password": "correct horse"})
	if st != http.StatusOK || m["device_id"] == "" || m["device_id"] == "phone-1" {
		t.Fatalf("login without device: %d %v", st, m)
	}
	devs, _ = e.svc.store.Devices(context.Background(), uid)
	if len(devs) != 2 {
		t.Fatalf("devices after a second login: %+v", devs)
	}
}

func TestRegisterValidation(t *testing.T) {
	e := newEnv(t)
	long := func(s string, n int) string { return strings.Repeat(s, n) }
	tests := []struct {
		name string
		body any
	}{
		{"empty body", ""},
		{"not json", "username=alice"},
		{"truncated json", `{"username": "alice"`},
		{"array", `[1,2]`},
		{"wrong type", `{"username": 5, "password": "12345678"}`},
		{"missing username", map[string]any{"password": "12345678"}},
		{"short username", map[string]any{"username": "ab", "password": "12345678"}},
		{"long username", map[string]any{"username": long("a", 33), "password": "12345678"}},
		{"username space", map[string]any{"username": "al ice", "password": "12345678"}},
		{"username unicode", map[string]any{"username": "алиса", "password": "12345678"}},
		{"username kelvin", map[string]any{"username": "\u212Aate", "password": "12345678"}},
		{"missing password", map[string]any{"username": "alice"}},
		{"short password", map[string]any{"username": "alice", "password": "1234567"}},
		{"long password", map[string]any{"username": "alice", "password": long("p", 129)}},
		{"long unicode password", map[string]any{"username": "alice", "password": long("é", 129)}},
		{"long nickname", map[string]any{"username": "alice", "password": "12345678", "nickname": long("n", 65)}},
		{"control nickname", map[string]any{"username": "alice", "password": "12345678", "nickname": "a\x00b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, m := e.do(t, "POST", "/api/v1/auth/register", tt.body)
			wantErr(t, tt.name, st, m, http.StatusBadRequest, "bad_request")
		})
	}
	// Boundaries that are accepted.
	ok := []map[string]any{
		{"username": "abc", "password": "12345678"},
		{"username": long("z", 32), "password": long("p", 128)},
		{"username": "a.b_c-9", "password": long("é", 128), "nickname": long("名", 64)},
	}
	for _, b := range ok {
		if st, m := e.do(t, "POST", "/api/v1/auth/register", b); st != http.StatusCreated {
			t.Fatalf("register %v: %d %v", b["username"], st, m)
		}
	}
	if _, err := e.svc.store.UserByUsername(context.Background(), "alice"); err == nil {
		t.Fatal("an invalid registration was stored")
	}
}

func TestRegisterDuplicate(t *testing.T) {
	e := newEnv(t)
	e.signup(t, "carol")
	for _, name := range []string{"carol", "CAROL", "Carol"} {
		st, m := e.do(t, "POST", "/api/v1/auth/register", map[string]any{"username": name, "password": "another-password"})
		wantErr(t, name, st, m, http.StatusConflict, "username_taken")
	}
}

func TestRequestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxRequestBody = 256 })
	big := `{"username":"alice","password":"12345678","nickname":"` + strings.Repeat("x", 300) + `"}`
	st, m := e.do(t, "POST", "/api/v1/auth/register", big)
	wantErr(t, "big body", st, m, http.StatusRequestEntityTooLarge, "too_large")
	// Without Content-Length (chunked) the limit still applies.
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/auth/register", &slowReader{s: big})
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked big body: %d", resp.StatusCode)
	}
}

// slowReader hides its length so the request is sent chunked.
type slowReader struct{ s string }

func (r *slowReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

func TestLoginBadCredentials(t *testing.T) {
	e := newEnv(t)
	e.signup(t, "dave")
	tests := []struct {
		name string
		body map[string]any
	}{
		{"wrong password", map[string]any{"username": "dave", "password": "wrong-password"}},
		{"unknown user", map[string]any{"username": "nobody", "password": "password-dave"}},
		{"invalid username", map[string]any{"username": "no body", "password": "password-dave"}},
		{"too long password", map[string]any{"username": "dave", "password": strings.Repeat("p", 129)}},
	}
	var first map[string]any
	for _, tt := range tests {
		st, m := e.do(t, "POST", "/api/v1/auth/login", tt.body)
		wantErr(t, tt.name, st, m, http.StatusUnauthorized, "bad_credentials")
		if first == nil {
			first = m
		} else if m["message"] != first["message"] {
			t.Fatalf("%s: answer %v differs from %v: it tells which part was wrong", tt.name, m, first)
		}
	}
	for _, tt := range []struct {
		name string
		body any
	}{
		{"missing password", map[string]any{"username": "dave"}},
		{"missing username", map[string]any{"password": "password-dave"}},
		{"bad device id", map[string]any{"username": "dave", "password": "password-dave", "device_id": "a,b"}},
		{"long device id", map[string]any{"username": "dave", "password": "password-dave", "device_id": strings.Repeat("d", 129)}},
		{"bad platform", map[string]any{"username": "dave", "password": "password-dave", "platform": "win dows"}},
		{"invalid json", "{"},
	} {
		st, m := e.do(t, "POST", "/api/v1/auth/login", tt.body)
		wantErr(t, tt.name, st, m, http.StatusBadRequest, "bad_request")
	}
}

func TestLoginRehash(t *testing.T) {
	e := newEnv(t)
	uid, _ := e.signup(t, "erin")
	// A hash made with other parameters (an older configuration) still
	// verifies, and login replaces it with one of the current parameters.
	p := auth.TestPasswordParams()
	p.Time = 2
	old, _ := auth.NewPasswordHasher(p)
	h, _ := old.Hash(context.Background(), "password-erin")
	if err := e.svc.store.SetPasswordHash(context.Background(), uid, h); err != nil {
		t.Fatal(err)
	}
	if st, m := e.do(t, "POST", "/api/v1/auth/login", map[string]any{"username": "erin", "password": "password-erin"}); st != http.StatusOK {
		t.Fatalf("login with an old hash: %d %v", st, m)
	}
	u, _ := e.svc.store.UserByID(context.Background(), uid)
	if u.PasswordHash == h || e.svc.hasher.NeedsRehash(u.PasswordHash) {
		t.Fatalf("hash not upgraded: %s", u.PasswordHash)
	}
}

func TestAuthRequired(t *testing.T) {
	e := newEnv(t)
	uid, tok := e.signup(t, "frank")
	other, _ := auth.NewIssuer([]byte("another-secret-0123456789abcdef!!"), testIssuerName)
	otherTok, _, _ := other.Issue(uid, "", time.Hour)
	tampered := tok[:len(tok)-4] + map[bool]string{true: "AAAA", false: "BBBB"}[!strings.HasSuffix(tok, "AAAA")]
	sub := strconv.FormatInt(uid, 10)
	tests := []struct {
		name   string
		header []string
	}{
		{"no header", nil},
		{"empty bearer", []string{"Authorization", "Bearer "}},
		{"basic", []string{"Authorization", "Basic YWxpY2U6cGFzcw=="}},
		{"garbage", bearer("garbage")},
		{"tampered", bearer(tampered)},
		{"other secret", bearer(otherTok)},
		{"expired", bearer(forge(t, jwt.SigningMethodHS256, testSecret, func(c *jwt.RegisteredClaims) {
			c.Subject = sub
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
			c.NotBefore = c.IssuedAt
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		}))},
		{"alg none", bearer(forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, func(c *jwt.RegisteredClaims) { c.Subject = sub }))},
		{"HS512", bearer(forge(t, jwt.SigningMethodHS512, testSecret, func(c *jwt.RegisteredClaims) { c.Subject = sub }))},
		{"wrong issuer", bearer(forge(t, jwt.SigningMethodHS256, testSecret, func(c *jwt.RegisteredClaims) { c.Subject = sub; c.Issuer = "x" }))},
		{"deleted user", bearer(forge(t, jwt.SigningMethodHS256, testSecret, func(c *jwt.RegisteredClaims) { c.Subject = "987654" }))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, m := e.do(t, "GET", "/api/v1/users/me", nil, tt.header...)
			wantErr(t, tt.name, st, m, http.StatusUnauthorized, "unauthorized")
		})
	}
	// "bearer" is case-insensitive.
	if st, m := e.do(t, "GET", "/api/v1/users/me", nil, "Authorization", "bearer "+tok); st != http.StatusOK {
		t.Fatalf("lower-case bearer: %d %v", st, m)
	}
	st, m := e.do(t, "GET", "/api/v1/users/1", nil)
	wantErr(t, "users/{id} without token", st, m, http.StatusUnauthorized, "unauthorized")
}

func TestUnmatchedRoutes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/api/v1/auth/login", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"DELETE", "/api/v1/users/me", http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD, PATCH"},
		{"GET", "/goim/push/keys", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"GET", "/api/v1/nothing", http.StatusNotFound, "not_found", ""},
		{"GET", "/", http.StatusNotFound, "not_found", ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, e.srv.URL+tt.path, nil)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tt.allow != "" && resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, resp.Header.Get("Allow"), tt.allow)
		}
		st, m := e.do(t, tt.method, tt.path, nil)
		wantErr(t, tt.method+" "+tt.path, st, m, tt.status, tt.code)
	}
}

func TestStoreUnavailable(t *testing.T) {
	e := newEnv(t)
	_, tok := e.signup(t, "gina")
	e.svc.store.Close()
	st, m := e.do(t, "GET", "/api/v1/users/me", nil, bearer(tok)...)
	wantErr(t, "me with a closed store", st, m, http.StatusInternalServerError, "internal")
	st, m = e.do(t, "POST", "/api/v1/auth/register", map[string]any{"username": "hank", "password": "12345678"})
	wantErr(t, "register with a closed store", st, m, http.StatusInternalServerError, "internal")
	var _ store.Store = e.svc.store
}

package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"

	"github.com/goimdev/goim/protocol"
)

type apiCall struct {
	Method, Path, Auth, ContentType string
	Query                           url.Values
	Body                            []byte
}

func newAPIServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, body []byte)) (*API, *[]apiCall) {
	t.Helper()
	var calls []apiCall
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		calls = append(calls, apiCall{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.URL.Query(), body})
		h(w, r, body)
	}))
	t.Cleanup(srv.Close)
	return &API{BaseURL: srv.URL + "/", HTTP: srv.Client()}, &calls
}

func writeJSON(w http.ResponseWriter, status int, v string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, v)
}

func TestAPIAccounts(t *testing.T) {
	api, calls := newAPIServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in map[string]string
		_ = json.Unmarshal(body, &in)
		switch r.URL.Path {
		case "/api/v1/auth/register":
			if in["username"] == "taken" {
				writeJSON(w, 409, `{"code":"username_taken","message":"username is taken"}`)
				return
			}
			writeJSON(w, 201, `{"user_id":42}`)
		case "/api/v1/auth/login":
			if in["password"] != "secret123" {
				writeJSON(w, 401, `{"code":"bad_credentials","message":"wrong"}`)
				return
			}
			writeJSON(w, 200, `{"token":"jwt-1","user_id":42,"expires_at_ms":1732800000000}`)
		case "/api/v1/users/me":
			if r.Header.Get("Authorization") != "Bearer jwt-1" {
				writeJSON(w, 401, `{"code":"unauthorized","message":"no token"}`)
				return
			}
			writeJSON(w, 200, `{"user_id":42,"username":"alice","nickname":"Alice"}`)
		default:
			w.WriteHeader(502)
			_, _ = io.WriteString(w, "<html>bad gateway</html>")
		}
	})
	ctx := context.Background()

	id, err := api.Register(ctx, "alice", "secret123", "Alice")
	if err != nil || id != 42 {
		t.Fatalf("Register = %d, %v", id, err)
	}
	if c := (*calls)[0]; c.Method != "POST" || c.ContentType != "application/json" || string(c.Body) != `{"username":"alice","password":"secret123","nickname":"Alice"}` {
		t.Fatalf("register call = %+v %s", c, c.Body)
	}
	_, err = api.Register(ctx, "taken", "secret123", "")
	if !errors.Is(err, &CodeError{Status: 409, Code: protocol.CodeUsernameTaken}) {
		t.Fatalf("taken: %v", err)
	}

	if _, err := api.Login(ctx, "alice", "wrong", "d1", "pc"); ErrorCode(err) != protocol.CodeBadCredentials {
		t.Fatalf("bad login: %v", err)
	}
	lr, err := api.Login(ctx, "alice", "secret123", "d1", "pc")
	if err != nil || lr != (LoginResp{Token: "jwt-1", UserID: 42, ExpiresAtMs: 1732800000000}) {
		t.Fatalf("Login = %+v, %v", lr, err)
	}

	if _, err := api.Me(ctx); ErrorCode(err) != protocol.CodeUnauthorized {
		t.Fatalf("Me without token: %v", err)
	}
	me, err := api.WithToken(lr.Token).Me(ctx)
	if err != nil || me.UserID != 42 || me.Username != "alice" || me.Nickname != "Alice" {
		t.Fatalf("Me = %+v, %v", me, err)
	}
	if api.Token != "" {
		t.Fatal("WithToken changed the original")
	}

	var raw []byte
	err = api.Do(ctx, "GET", "/elsewhere", nil, &raw)
	var ce *CodeError
	if !errors.As(err, &ce) || ce.Status != 502 || ce.Code != "" || ce.Message != "<html>bad gateway</html>" {
		t.Fatalf("non-JSON error: %#v", err)
	}
}

func TestAPIPush(t *testing.T) {
	api, calls := newAPIServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.URL.Query().Get("operation") == "1666" {
			writeJSON(w, 200, `{"code":-400,"message":"bad op","data":null}`)
			return
		}
		writeJSON(w, 200, `{"code":0,"message":"","data":null}`)
	})
	api.Token, api.AdminKey = "user-jwt", "admin-key"
	ctx := context.Background()
	body := []byte{0, 1, 2, 'x'}
	steps := []struct {
		name  string
		do    func() error
		path  string
		query url.Values
	}{
		{"keys", func() error { return api.PushKeys(ctx, 1000, []string{"k1", "k2"}, body) }, "/goim/push/keys", url.Values{"operation": {"1000"}, "keys": {"k1", "k2"}}},
		{"mids", func() error { return api.PushMids(ctx, 1001, []int64{7, 9}, body) }, "/goim/push/mids", url.Values{"operation": {"1001"}, "mids": {"7", "9"}}},
		{"room", func() error { return api.PushRoom(ctx, 1002, "live", "1000", body) }, "/goim/push/room", url.Values{"operation": {"1002"}, "type": {"live"}, "room": {"1000"}}},
		{"all", func() error { return api.PushAll(ctx, 1003, 100, body) }, "/goim/push/all", url.Values{"operation": {"1003"}, "speed": {"100"}}},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); err != nil {
				t.Fatal(err)
			}
			c := (*calls)[i]
			if c.Method != "POST" || c.Path != st.path || c.Auth != "Bearer admin-key" || c.ContentType != "application/octet-stream" || string(c.Body) != string(body) {
				t.Fatalf("call = %+v", c)
			}
			for k, v := range st.query {
				if !slices.Equal(c.Query[k], v) {
					t.Fatalf("query %s = %v, want %v", k, c.Query[k], v)
				}
			}
		})
	}
	if err := api.PushAll(ctx, 1666, 0, nil); ErrorCode(err) != "-400" {
		t.Fatalf("refused push: %v", err)
	}
}

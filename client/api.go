package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/bytedance/sonic"
)

// API is a small client of the logic HTTP API (PROTOCOL.md section 5) for
// applications, tests and benchmarks. The zero value is not usable: set
// BaseURL. Its methods are safe for concurrent use as long as the fields are
// not changed meanwhile.
type API struct {
	// BaseURL is the API root, e.g. "http://127.0.0.1:3111".
	BaseURL string
	// HTTP is the HTTP client. Default http.DefaultClient.
	HTTP *http.Client
	// Token is sent as "Authorization: Bearer <Token>" on /api/ requests
	// when set.
	Token string
	// AdminKey is sent as "Authorization: Bearer <AdminKey>" on /goim/
	// (push API) requests when set.
	AdminKey string
}

// WithToken returns a copy of a that authenticates with token.
func (a *API) WithToken(token string) *API {
	b := *a
	b.Token = token
	return &b
}

// maxResponseBody bounds what Do reads from a response.
const maxResponseBody = 32 << 20

// Do sends one request and decodes the answer. in may be nil (no body),
// []byte (sent as is, application/octet-stream) or any value (sent as JSON).
// out may be nil (answer discarded), *[]byte (raw answer) or a pointer to
// decode JSON into. A status >= 400 becomes a *CodeError with the status and
// the {"code", "message"} of the body.
func (a *API) Do(ctx context.Context, method, path string, in, out any) error {
	var (
		body        io.Reader
		contentType string
	)
	switch v := in.(type) {
	case nil:
	case []byte:
		body, contentType = bytes.NewReader(v), "application/octet-stream"
	default:
		b, err := sonic.Marshal(v)
		if err != nil {
			return fmt.Errorf("client: encode %s %s: %w", method, path, err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	token := a.Token
	if strings.HasPrefix(path, "/goim/") {
		token = a.AdminKey
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := a.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return fmt.Errorf("client: %s %s: read answer: %w", method, path, err)
	}
	if len(data) > maxResponseBody {
		return fmt.Errorf("client: %s %s: answer larger than %d bytes", method, path, maxResponseBody)
	}
	if resp.StatusCode >= 400 {
		return httpError(resp.StatusCode, data)
	}
	switch v := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*v = data
		return nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := sonic.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func httpError(status int, data []byte) error {
	var st replyStatus
	if err := sonic.Unmarshal(data, &st); err == nil {
		if ce, ok := st.err().(*CodeError); ok {
			ce.Status = status
			return ce
		}
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &CodeError{Status: status, Message: msg}
}

// Register creates an account (POST /api/v1/auth/register) and returns its
// user id. A taken username is a *CodeError with code username_taken.
func (a *API) Register(ctx context.Context, username, password, nickname string) (int64, error) {
	var out struct {
		UserID int64 `json:"user_id"`
	}
	in := struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Nickname string `json:"nickname"`
	}{username, password, nickname}
	if err := a.Do(ctx, http.MethodPost, "/api/v1/auth/register", in, &out); err != nil {
		return 0, err
	}
	return out.UserID, nil
}

// LoginResp is the answer of POST /api/v1/auth/login.
type LoginResp struct {
	Token       string `json:"token"`
	UserID      int64  `json:"user_id"`
	ExpiresAtMs int64  `json:"expires_at_ms"`
}

// Login exchanges credentials for a JWT (POST /api/v1/auth/login). Wrong
// credentials are a *CodeError with code bad_credentials. It does not change
// a.Token: use a.WithToken(resp.Token).
func (a *API) Login(ctx context.Context, username, password, deviceID, platform string) (LoginResp, error) {
	var out LoginResp
	in := struct {
		Username string `json:"username"`
		Password string `json:"password"`
		DeviceID string `json:"device_id"`
		Platform string `json:"platform"`
	}{username, password, deviceID, platform}
	err := a.Do(ctx, http.MethodPost, "/api/v1/auth/login", in, &out)
	return out, err
}

// User is a user profile.
type User struct {
	UserID   int64  `json:"user_id"`
	Username string `json:"username,omitempty"`
	Nickname string `json:"nickname,omitempty"`
	Avatar   string `json:"avatar,omitempty"`
}

// Me returns the caller's profile (GET /api/v1/users/me).
func (a *API) Me(ctx context.Context) (User, error) {
	var u User
	err := a.Do(ctx, http.MethodGet, "/api/v1/users/me", nil, &u)
	return u, err
}

// pushReply is the goim push API answer.
type pushReply struct {
	replyStatus
}

func (a *API) push(ctx context.Context, path string, q url.Values, body []byte) error {
	var out pushReply
	if err := a.Do(ctx, http.MethodPost, path+"?"+q.Encode(), body, &out); err != nil {
		return err
	}
	return out.err()
}

// PushKeys pushes body with op to the connections with the given device keys
// (POST /goim/push/keys).
func (a *API) PushKeys(ctx context.Context, op int32, keys []string, body []byte) error {
	q := url.Values{"operation": {strconv.Itoa(int(op))}, "keys": keys}
	return a.push(ctx, "/goim/push/keys", q, body)
}

// PushMids pushes body with op to every connection of the given users
// (POST /goim/push/mids).
func (a *API) PushMids(ctx context.Context, op int32, mids []int64, body []byte) error {
	q := url.Values{"operation": {strconv.Itoa(int(op))}}
	for _, m := range mids {
		q.Add("mids", strconv.FormatInt(m, 10))
	}
	return a.push(ctx, "/goim/push/mids", q, body)
}

// PushRoom pushes body with op to a room (POST /goim/push/room): roomType
// "live" and room "1000" address the room key "live://1000".
func (a *API) PushRoom(ctx context.Context, op int32, roomType, room string, body []byte) error {
	q := url.Values{"operation": {strconv.Itoa(int(op))}, "type": {roomType}, "room": {room}}
	return a.push(ctx, "/goim/push/room", q, body)
}

// PushAll broadcasts body with op to every connection (POST /goim/push/all);
// speed limits the broadcast rate as in goim (0: the server's default).
func (a *API) PushAll(ctx context.Context, op int32, speed int, body []byte) error {
	q := url.Values{"operation": {strconv.Itoa(int(op))}, "speed": {strconv.Itoa(speed)}}
	return a.push(ctx, "/goim/push/all", q, body)
}

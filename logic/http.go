package logic

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/protocol"
)

// codeMethodNotAllowed answers a known path with the wrong method (405).
const codeMethodNotAllowed = "method_not_allowed"

// apiError is an error answered as {"code", "message"} with a status.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errBadRequest(msg string) *apiError {
	return &apiError{http.StatusBadRequest, protocol.CodeBadRequest, msg}
}

var (
	errUnauthorized   = &apiError{http.StatusUnauthorized, protocol.CodeUnauthorized, "missing or invalid bearer token"}
	errBadCredentials = &apiError{http.StatusUnauthorized, protocol.CodeBadCredentials, "wrong username or password"}
	errForbidden      = &apiError{http.StatusForbidden, protocol.CodeForbidden, "forbidden"}
	errNotFound       = &apiError{http.StatusNotFound, protocol.CodeNotFound, "not found"}
	errTooLarge       = &apiError{http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "request body too large"}
	errInternal       = &apiError{http.StatusInternalServerError, protocol.CodeInternal, "internal error"}
	errUnavailable    = &apiError{http.StatusServiceUnavailable, protocol.CodeUnavailable, "service unavailable, retry later"}
)

// handlerFunc is an API handler: it writes a success answer itself, or
// returns an error (an *apiError, or anything else for 500 internal).
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one endpoint of the HTTP API.
type route struct {
	pattern string // "METHOD /path/{param}" (net/http.ServeMux syntax)
	h       handlerFunc
}

// routeTable lists every endpoint; docs/openapi.yaml documents each of them
// (a test checks both ways).
func (s *Service) routeTable() []route {
	authed := s.authed
	rel := s.authed
	return []route{
		{"POST /api/v1/auth/register", s.handleRegister},
		{"POST /api/v1/auth/login", s.handleLogin},
		{"GET /api/v1/users/me", authed(s.handleMe)},
		{"PATCH /api/v1/users/me", authed(s.handleUpdateMe)},
		{"GET /api/v1/users/me/devices", authed(s.handleMyDevices)},
		{"GET /api/v1/users/{id}", authed(s.handleUser)},

		{"POST /api/v1/friends/requests", rel(s.handleFriendRequest)},
		{"GET /api/v1/friends/requests", rel(s.handleFriendRequests)},
		{"POST /api/v1/friends/requests/{id}/accept", rel(s.handleAcceptRequest)},
		{"POST /api/v1/friends/requests/{id}/reject", rel(s.handleRejectRequest)},
		{"GET /api/v1/friends", rel(s.handleFriends)},
		{"PATCH /api/v1/friends/{user_id}", rel(s.handleFriendRemark)},
		{"DELETE /api/v1/friends/{user_id}", rel(s.handleDeleteFriend)},

		{"GET /api/v1/blocks", rel(s.handleBlocks)},
		{"PUT /api/v1/blocks/{user_id}", rel(s.handleBlock)},
		{"DELETE /api/v1/blocks/{user_id}", rel(s.handleUnblock)},

		{"POST /api/v1/groups", rel(s.handleCreateGroup)},
		{"GET /api/v1/groups", rel(s.handleGroups)},
		{"GET /api/v1/groups/{id}", rel(s.handleGroup)},
		{"PATCH /api/v1/groups/{id}", rel(s.handleUpdateGroup)},
		{"DELETE /api/v1/groups/{id}", rel(s.handleDismissGroup)},
		{"GET /api/v1/groups/{id}/members", rel(s.handleMembers)},
		{"POST /api/v1/groups/{id}/members", rel(s.handleAddMembers)},
		{"PATCH /api/v1/groups/{id}/members/{user_id}", rel(s.handleUpdateMember)},
		{"DELETE /api/v1/groups/{id}/members/{user_id}", rel(s.handleRemoveMember)},
		{"POST /api/v1/groups/{id}/transfer", rel(s.handleTransferGroup)},

		{"POST /api/v1/messages", authed(s.handleSendMessage)},
		{"POST /api/v1/messages/{msg_id}/recall", authed(s.handleRecall)},
		{"GET /api/v1/conversations", authed(s.handleConversations)},
		{"GET /api/v1/conversations/{id}/messages", authed(s.handleHistory)},
		{"GET /api/v1/conversations/{id}/messages/{seq}/reads", authed(s.handleReadCount)},
		{"POST /api/v1/conversations/{id}/read", authed(s.handleRead)},
		{"PUT /api/v1/conversations/{id}/mute", authed(s.handleMuteConversation)},

		{"POST /goim/push/keys", s.admin(s.handlePushKeys)},
		{"POST /goim/push/mids", s.admin(s.handlePushMids)},
		{"POST /goim/push/room", s.admin(s.handlePushRoom)},
		{"POST /goim/push/all", s.admin(s.handlePushAll)},
		{"GET /goim/online/top", s.admin(s.handleOnlineTop)},
		{"GET /goim/online/room", s.admin(s.handleOnlineRoom)},
		{"GET /goim/online/total", s.admin(s.handleOnlineTotal)},
		{"GET /goim/nodes/weighted", s.admin(s.handleNodesWeighted)},
	}
}

// routes builds the HTTP API.
func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routeTable() {
		mux.Handle(rt.pattern, s.instrument(rt.pattern, rt.h))
	}
	return &jsonMux{mux: mux}
}

// jsonMux answers the requests its mux has no route for (404, and 405 for a
// known path with another method) with JSON errors instead of text.
type jsonMux struct{ mux *http.ServeMux }

func (m *jsonMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := m.mux.Handler(r)
	if pattern != "" {
		m.mux.ServeHTTP(w, r)
		return
	}
	// Unmatched: let the mux decide (404, 405 with Allow, or a redirect to
	// a cleaned path), then answer 404/405 with JSON.
	rec := &bufferedWriter{header: http.Header{}}
	h.ServeHTTP(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	switch status {
	case http.StatusNotFound:
		httpRequests.WithLabelValues("unmatched", "404").Inc()
		writeError(w, errNotFound)
	case http.StatusMethodNotAllowed:
		httpRequests.WithLabelValues("unmatched", "405").Inc()
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeError(w, &apiError{http.StatusMethodNotAllowed, codeMethodNotAllowed, "method " + r.Method + " not allowed"})
	default:
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		w.Write(rec.body.Bytes()) //nolint:errcheck // the client is gone
	}
}

// bufferedWriter records a response.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument turns h into an http.Handler that answers h's errors and counts
// requests by route.
func (s *Service) instrument(route string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		if err := h(sw, r); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
					ae = errUnavailable // the client went away; the answer is moot
				} else {
					s.log.Error("http handler failed", "route", route, "err", err)
					ae = errInternal
				}
			}
			writeError(sw, ae)
		}
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		httpRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	})
}

// writeJSON writes v as a JSON answer with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := sonic.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b) // a write error means the client is gone
	return nil
}

type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func errorBody(code, msg string) []byte {
	b, err := sonic.Marshal(errorJSON{Code: code, Message: msg})
	if err != nil { // cannot happen for two strings
		return []byte(`{"code":"internal","message":""}`)
	}
	return b
}

func writeError(w http.ResponseWriter, e *apiError) {
	b := errorBody(e.code, e.message)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

// readBody reads the request body up to the configured limit.
func (s *Service) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > s.cfg.MaxRequestBody {
		return nil, errTooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, errBadRequest("cannot read request body")
	}
	return b, nil
}

// decodeJSON reads a JSON object request body into v. Unknown fields are
// ignored.
func (s *Service) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errBadRequest("request body must be a JSON object")
	}
	if err := sonic.Unmarshal(b, v); err != nil {
		return errBadRequest("invalid JSON: " + err.Error())
	}
	return nil
}

type ctxKey int

const claimsKey ctxKey = iota

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	t := strings.TrimSpace(h[len(prefix):])
	return t, t != ""
}

// authed requires a valid app JWT and puts its claims in the request context.
func (s *Service) authed(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok, ok := bearerToken(r)
		if !ok {
			return errUnauthorized
		}
		claims, err := s.issuer.Verify(tok)
		if err != nil {
			return errUnauthorized
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), claimsKey, claims)))
	}
}

func claimsFrom(ctx context.Context) *auth.Claims {
	c, _ := ctx.Value(claimsKey).(*auth.Claims)
	return c
}

// admin guards the goim push API: the admin key when configured, otherwise
// loopback clients only.
func (s *Service) admin(h handlerFunc) handlerFunc {
	keySum := sha256.Sum256([]byte(s.cfg.AdminKey))
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.cfg.AdminKey != "" {
			tok, _ := bearerToken(r)
			// Compare digests: constant time whatever the lengths.
			got := sha256.Sum256([]byte(tok))
			if subtle.ConstantTimeCompare(got[:], keySum[:]) != 1 {
				return &apiError{http.StatusUnauthorized, protocol.CodeUnauthorized, "admin key required"}
			}
		} else if !isLoopback(r.RemoteAddr) || proxied(r) {
			// A reverse proxy on the same host makes every client look
			// like loopback: a forwarded request is not a local one.
			return &apiError{http.StatusForbidden, protocol.CodeForbidden, "push API serves local loopback clients only (no admin key configured)"}
		}
		return h(w, r)
	}
}

// proxied reports whether r came through a proxy that says so.
func proxied(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// isLoopback reports whether a remote address (ip:port) is loopback.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if i := strings.IndexByte(host, '%'); i >= 0 { // zone
		host = host[:i]
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

package logic

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bytedance/sonic"
	"github.com/google/uuid"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// Limits on the AuthReq body (PROTOCOL.md section 3).
const (
	maxAuthBody   = 8 << 10
	maxKeyLen     = 128                 // connection key / device id
	maxRoomLen    = protocol.MaxRoomLen // room key, "type://id"
	maxPlatformLn = 16
)

// authReq is the Op 7 body: PROTOCOL.md's AuthReq, or goim's legacy form
// with mid and no token.
type authReq struct {
	Token    string  `json:"token"`
	Key      string  `json:"key"`
	RoomID   string  `json:"room_id"`
	Platform string  `json:"platform"`
	Accepts  []int32 `json:"accepts"`
	Mid      int64   `json:"mid"`
}

// authReply is the Op 8 body.
type authReply struct {
	UserID       int64  `json:"user_id"`
	Key          string `json:"key"`
	HeartbeatS   int64  `json:"heartbeat_s"`
	ServerTimeMS int64  `json:"server_time_ms"`
	Node         string `json:"node"`
}

var errBadAuthBody = errors.New("malformed auth body")

// parseAuthReq decodes and validates an Op 7 body. The strings it returns
// never alias body. maxAccepts bounds the accepts list (never beyond
// protocol.MaxAccepts, the comet's bound for Op 14), which comes back sorted
// without duplicates.
func parseAuthReq(body []byte, maxAccepts int) (authReq, error) {
	maxAccepts = min(maxAccepts, protocol.MaxAccepts)
	var r authReq
	if len(body) == 0 || len(body) > maxAuthBody {
		return r, fmt.Errorf("%w: %d bytes", errBadAuthBody, len(body))
	}
	if err := sonic.Unmarshal(body, &r); err != nil {
		return authReq{}, fmt.Errorf("%w: %v", errBadAuthBody, err)
	}
	r.Token = strings.Clone(strings.TrimSpace(r.Token))
	r.Key = strings.Clone(r.Key)
	r.RoomID = strings.Clone(r.RoomID)
	r.Platform = strings.Clone(asciiLower(r.Platform))
	switch {
	case len(r.Token) > auth.MaxTokenLen:
		return authReq{}, fmt.Errorf("%w: token too long", errBadAuthBody)
	case r.Key != "" && !validKey(r.Key):
		return authReq{}, fmt.Errorf("%w: key must be 1-%d of A-Z a-z 0-9 _ . : -", errBadAuthBody, maxKeyLen)
	case !validRoom(r.RoomID):
		return authReq{}, fmt.Errorf("%w: room_id must be at most %d printable characters without commas", errBadAuthBody, maxRoomLen)
	case !validPlatform(r.Platform):
		return authReq{}, fmt.Errorf("%w: platform must be at most %d of a-z 0-9 _ -", errBadAuthBody, maxPlatformLn)
	case len(r.Accepts) > maxAccepts:
		return authReq{}, fmt.Errorf("%w: more than %d accepts", errBadAuthBody, maxAccepts)
	case r.Mid < 0:
		return authReq{}, fmt.Errorf("%w: negative mid", errBadAuthBody)
	}
	if len(r.Accepts) > 0 {
		r.Accepts = slices.Clone(r.Accepts)
		slices.Sort(r.Accepts)
		r.Accepts = slices.Compact(r.Accepts)
	}
	return r, nil
}

// validKey reports whether s is a usable connection key or device id: it
// travels in the push API's comma-separated keys list and in logs.
func validKey(s string) bool {
	if s == "" || len(s) > maxKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// validRoom reports whether s is an acceptable room key ("" for none):
// protocol.ValidRoom, the rule the comet applies to Op 12 too.
func validRoom(s string) bool { return protocol.ValidRoom(s) == nil }

// validPlatform reports whether s (already lower-cased) is an acceptable
// platform: "" or a short token such as ios, android, web, pc.
func validPlatform(s string) bool {
	if len(s) > maxPlatformLn {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func closeErr(code, reason string) *comet.CloseError {
	return &comet.CloseError{Code: code, Reason: reason}
}

// Connect implements comet.Logic: it authenticates an Op 7 body and records
// the session.
func (s *Service) Connect(ctx context.Context, req *comet.ConnectRequest) (*comet.ConnectReply, error) {
	reply, result, err := s.connect(ctx, req)
	connects.WithLabelValues(result).Inc()
	if err != nil {
		lvl := s.log.Debug
		if result == connectError {
			lvl = s.log.Warn
		}
		lvl("connect refused", "server", req.Server, "remote", req.RemoteAddr, "result", result, "err", err)
		return nil, err
	}
	return reply, nil
}

func (s *Service) connect(ctx context.Context, req *comet.ConnectRequest) (*comet.ConnectReply, string, error) {
	if req == nil || req.Server == "" {
		return nil, connectBadRequest, closeErr(protocol.CodeProtocolError, "connect without server")
	}
	ar, err := parseAuthReq(req.Body, s.cfg.MaxAccepts)
	if err != nil {
		return nil, connectBadRequest, closeErr(protocol.CodeUnauthorized, err.Error())
	}
	token := ar.Token
	if token == "" {
		token = strings.TrimSpace(req.QueryToken)
	}
	var userID int64
	switch {
	case token != "":
		claims, err := s.issuer.Verify(token)
		if err != nil {
			return nil, connectUnauthorized, closeErr(protocol.CodeUnauthorized, "invalid token")
		}
		if _, err := s.store.UserByID(ctx, claims.UserID); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, connectUnauthorized, closeErr(protocol.CodeUnauthorized, "unknown user")
			}
			return nil, connectError, fmt.Errorf("%w: %w", closeErr(protocol.CodeUnavailable, "user lookup failed"), err)
		}
		userID = claims.UserID
	case ar.Mid > 0 && s.cfg.InsecureMidAuth:
		userID = ar.Mid
	case ar.Mid > 0:
		return nil, connectLegacyRefuse, closeErr(protocol.CodeUnauthorized, "token required (legacy mid auth is disabled)")
	default:
		return nil, connectUnauthorized, closeErr(protocol.CodeUnauthorized, "token required")
	}

	key := ar.Key
	if key == "" {
		key = uuid.NewString()
	} else {
		owner, _, ok, err := s.sessions.KeyOwner(ctx, key)
		if err != nil {
			return nil, connectError, fmt.Errorf("%w: %w", closeErr(protocol.CodeUnavailable, "session registry failed"), err)
		}
		if ok && owner != userID {
			return nil, connectKeyInUse, closeErr(protocol.CodeUnauthorized, "key in use")
		}
	}
	sess := session.Session{UserID: userID, Key: key, Server: req.Server, Platform: ar.Platform, ConnID: req.ConnID}
	if err := s.sessions.Add(ctx, sess); errors.Is(err, session.ErrKeyInUse) {
		return nil, connectKeyInUse, closeErr(protocol.CodeUnauthorized, "key in use")
	} else if err != nil {
		return nil, connectError, fmt.Errorf("%w: %w", closeErr(protocol.CodeUnavailable, "session registry failed"), err)
	}
	hb := max(int64(s.cfg.HeartbeatInterval/time.Second), 1)
	body, err := sonic.Marshal(authReply{
		UserID:       userID,
		Key:          key,
		HeartbeatS:   hb,
		ServerTimeMS: s.now().UnixMilli(),
		Node:         req.Server,
	})
	if err != nil {
		return nil, connectError, fmt.Errorf("logic: encode auth reply: %w", err)
	}
	return &comet.ConnectReply{
		UserID:    userID,
		Key:       key,
		Room:      ar.RoomID,
		Platform:  ar.Platform,
		Accepts:   ar.Accepts,
		Heartbeat: time.Duration(hb) * time.Second,
		Body:      body,
	}, connectOK, nil
}

// Disconnect implements comet.Logic: it removes the session of (userID,
// key) if it is still connection connID's.
func (s *Service) Disconnect(ctx context.Context, server string, userID int64, key, connID string) error {
	if _, err := s.sessions.Remove(ctx, userID, key, server, connID); err != nil {
		return fmt.Errorf("logic: disconnect: %w", err)
	}
	return nil
}

// Heartbeat implements comet.Logic.
func (s *Service) Heartbeat(ctx context.Context, server string, userID int64, key, connID string) error {
	if err := s.sessions.Touch(ctx, session.Session{UserID: userID, Key: key, Server: server, ConnID: connID}); err != nil {
		return fmt.Errorf("logic: heartbeat: %w", err)
	}
	return nil
}

// Heartbeats implements comet.HeartbeatBatcher: it refreshes the sessions of
// many connections of server, in one registry call when the registry takes
// batches (session.BatchToucher: one Redis pipeline).
func (s *Service) Heartbeats(ctx context.Context, server string, conns []comet.ConnRef) error {
	ss := make([]session.Session, len(conns))
	for i, c := range conns {
		ss[i] = session.Session{UserID: c.UserID, Key: c.Key, Server: server, ConnID: c.ConnID}
	}
	if b, ok := s.sessions.(session.BatchToucher); ok {
		if err := b.TouchMany(ctx, ss); err != nil {
			return fmt.Errorf("logic: heartbeats: %w", err)
		}
		return nil
	}
	var first error
	for _, x := range ss {
		if err := s.sessions.Touch(ctx, x); err != nil && first == nil {
			first = fmt.Errorf("logic: heartbeats: %w", err)
		}
	}
	return first
}

// RoomJoined implements comet.Logic.
func (s *Service) RoomJoined(ctx context.Context, server, room string) error {
	if server == "" || room == "" {
		return errors.New("logic: room joined: empty server or room")
	}
	if err := s.sessions.AddRoom(ctx, server, room); err != nil {
		return fmt.Errorf("logic: room joined: %w", err)
	}
	return nil
}

// RenewOnline implements comet.Logic.
func (s *Service) RenewOnline(ctx context.Context, report *comet.OnlineReport) (map[string]int32, error) {
	if report == nil || report.Server == "" {
		return nil, errors.New("logic: renew online: empty report")
	}
	info := session.ServerInfo{
		Name:      report.Server,
		TCPAddr:   report.TCPAddr,
		WSAddr:    report.WSAddr,
		Conns:     report.Conns,
		IPs:       report.IPs,
		UpdatedAt: s.now(),
		TakenAt:   report.TakenAt,
	}
	if err := s.sessions.SetServer(ctx, info, report.Rooms); err != nil {
		return nil, fmt.Errorf("logic: renew online: %w", err)
	}
	counts, err := s.sessions.RoomCounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("logic: renew online: %w", err)
	}
	return counts, nil
}

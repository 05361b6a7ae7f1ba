package logic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// Account field rules (PROTOCOL.md section 5).
const (
	minUsernameLen = 3
	maxUsernameLen = 32
	minPasswordLen = 8   // characters
	maxPasswordLen = 128 // characters
	maxNicknameLen = 64  // characters
)

// asciiLower lower-cases ASCII letters only (usernames and platforms are
// ASCII; other bytes are left for the validators to refuse).
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// validUsername: 3-32 of a-z 0-9 _ . -
func validUsername(s string) bool {
	if len(s) < minUsernameLen || len(s) > maxUsernameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// validPassword: 8-128 characters of valid UTF-8.
func validPassword(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	n := utf8.RuneCountInString(s)
	return n >= minPasswordLen && n <= maxPasswordLen
}

// validNickname: at most 64 characters of valid UTF-8 without control
// characters.
func validNickname(s string) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxNicknameLen {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

type registerReq struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Nickname string `json:"nickname"`
}

type userIDResp struct {
	UserID int64 `json:"user_id"`
}

func (s *Service) handleRegister(w http.ResponseWriter, r *http.Request) error {
	var req registerReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	username := asciiLower(req.Username)
	switch {
	case !validUsername(username):
		return errBadRequest("username must be 3-32 characters of a-z 0-9 _ . -")
	case !validPassword(req.Password):
		return errBadRequest("password must be 8-128 characters")
	case !validNickname(req.Nickname):
		return errBadRequest("nickname must be at most 64 characters without control characters")
	}
	nickname := req.Nickname
	if nickname == "" {
		nickname = username
	}
	hash, err := s.hasher.Hash(r.Context(), req.Password)
	if err != nil {
		return s.hashErr(r.Context(), err)
	}
	id, err := s.store.CreateUser(r.Context(), &store.User{Username: username, PasswordHash: hash, Nickname: nickname})
	if err != nil {
		if errors.Is(err, store.ErrUsernameTaken) {
			return &apiError{http.StatusConflict, protocol.CodeUsernameTaken, "username is taken"}
		}
		return fmt.Errorf("register: %w", err)
	}
	s.log.Info("user registered", "user_id", id, "username", username)
	return writeJSON(w, http.StatusCreated, userIDResp{UserID: id})
}

// hashErr maps a password hashing failure: a request that gave up waiting
// for a hashing slot (overload) is 503, anything else 500.
func (s *Service) hashErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errUnavailable
	}
	return fmt.Errorf("password hash: %w", err)
}

type loginReq struct {
	Username string `json:"username"`
	Password string `json:"password"`
	DeviceID string `json:"device_id"`
	Platform string `json:"platform"`
}

type loginResp struct {
	Token       string `json:"token"`
	UserID      int64  `json:"user_id"`
	ExpiresAtMS int64  `json:"expires_at_ms"`
	DeviceID    string `json:"device_id"`
}

func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) error {
	var req loginReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	if req.Username == "" || req.Password == "" {
		return errBadRequest("username and password are required")
	}
	platform := asciiLower(req.Platform)
	switch {
	case req.DeviceID != "" && !validKey(req.DeviceID):
		return errBadRequest(fmt.Sprintf("device_id must be 1-%d of A-Z a-z 0-9 _ . : -", maxKeyLen))
	case !validPlatform(platform):
		return errBadRequest(fmt.Sprintf("platform must be at most %d of a-z 0-9 _ -", maxPlatformLn))
	}
	username := asciiLower(req.Username)
	if !validUsername(username) || !validPassword(req.Password) {
		// No such account can exist; nothing to hide by hashing.
		return errBadCredentials
	}
	u, err := s.store.UserByUsername(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		// Spend the time of a real check so timing does not reveal which
		// usernames exist.
		if err := s.hasher.DummyVerify(ctx, req.Password); err != nil && !errors.Is(err, auth.ErrPasswordMismatch) {
			return s.hashErr(ctx, err)
		}
		return errBadCredentials
	}
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if err := s.hasher.Verify(ctx, u.PasswordHash, req.Password); err != nil {
		if errors.Is(err, auth.ErrPasswordMismatch) {
			return errBadCredentials
		}
		return s.hashErr(ctx, err)
	}
	if s.hasher.NeedsRehash(u.PasswordHash) {
		if h, err := s.hasher.Hash(ctx, req.Password); err == nil {
			if err := s.store.SetPasswordHash(ctx, u.ID, h); err != nil {
				s.log.Warn("password rehash not stored", "user_id", u.ID, "err", err)
			}
		}
	}
	deviceID := req.DeviceID
	if deviceID == "" {
		deviceID = uuid.NewString()
	}
	if err := s.store.UpsertDevice(ctx, store.Device{UserID: u.ID, DeviceID: deviceID, Platform: platform, LastLoginAt: s.now()}); err != nil {
		return fmt.Errorf("login: record device: %w", err)
	}
	token, exp, err := s.issuer.Issue(u.ID, deviceID, s.cfg.TokenTTL)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	return writeJSON(w, http.StatusOK, loginResp{Token: token, UserID: u.ID, ExpiresAtMS: exp.UnixMilli(), DeviceID: deviceID})
}

type profileResp struct {
	UserID      int64  `json:"user_id"`
	Username    string `json:"username"`
	Nickname    string `json:"nickname"`
	Avatar      string `json:"avatar"`
	CreatedAtMS int64  `json:"created_at_ms"`
}

func profileOf(u *store.User) profileResp {
	return profileResp{UserID: u.ID, Username: u.Username, Nickname: u.Nickname, Avatar: u.Avatar, CreatedAtMS: u.CreatedAt.UnixMilli()}
}

func (s *Service) handleMe(w http.ResponseWriter, r *http.Request) error {
	if err := authorize(ActProfileRead, RelUser, RelSelf); err != nil {
		return err
	}
	u, err := s.store.UserByID(r.Context(), claimsFrom(r.Context()).UserID)
	if errors.Is(err, store.ErrNotFound) {
		return errUnauthorized // the token's user no longer exists
	}
	if err != nil {
		return fmt.Errorf("me: %w", err)
	}
	return writeJSON(w, http.StatusOK, profileOf(u))
}

func (s *Service) handleUser(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return errBadRequest("user id must be a positive integer")
	}
	rel := RelOther
	if id == me(r) {
		rel = RelSelf
	}
	if err := authorize(ActProfileRead, RelUser, rel); err != nil {
		return err
	}
	u, err := s.store.UserByID(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("user: %w", err)
	}
	return writeJSON(w, http.StatusOK, profileOf(u))
}

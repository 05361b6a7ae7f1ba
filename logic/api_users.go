package logic

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/goimdev/goim/internal/store"
)

// Relation field rules (characters unless said otherwise); the store's
// column limits (bytes) are four times these.
const (
	maxAvatarBytes      = store.MaxAvatarLen // 1024 bytes
	maxRemarkLen        = 64
	maxRequestMsgLen    = 256
	maxGroupNameLen     = 64
	maxAnnouncementLen  = 1024
	maxMemberNickLen    = 64
	maxListLimit        = 200
	defaultRequestLimit = 100
)

// validText reports whether s is valid UTF-8 of at most maxChars characters
// without control characters (newlines and tabs allowed when multiline).
func validText(s string, maxChars int, multiline bool) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxChars {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r')) {
			return false
		}
	}
	return true
}

// validAvatar: at most 1024 bytes of printable text (a URL or a file id).
func validAvatar(s string) bool {
	return len(s) <= maxAvatarBytes && validText(s, maxAvatarBytes, false)
}

// pathID parses a positive int64 path value.
func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, errBadRequest(name + " must be a positive integer")
	}
	return id, nil
}

// queryInt parses an optional non-negative integer query parameter.
func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errBadRequest(name + " must be a non-negative integer")
	}
	return n, nil
}

// me is the caller's user id.
func me(r *http.Request) int64 { return claimsFrom(r.Context()).UserID }

type updateProfileReq struct {
	Nickname *string `json:"nickname"`
	Avatar   *string `json:"avatar"`
}

// PATCH /api/v1/users/me {"nickname", "avatar"} -> the profile
func (s *Service) handleUpdateMe(w http.ResponseWriter, r *http.Request) error {
	var req updateProfileReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	switch {
	case req.Nickname == nil && req.Avatar == nil:
		return errBadRequest("nothing to change: give nickname and/or avatar")
	case req.Nickname != nil && (*req.Nickname == "" || !validNickname(*req.Nickname)):
		return errBadRequest(fmt.Sprintf("nickname must be 1-%d characters without control characters", maxNicknameLen))
	case req.Avatar != nil && !validAvatar(*req.Avatar):
		return errBadRequest(fmt.Sprintf("avatar must be at most %d bytes of printable text", maxAvatarBytes))
	}
	if err := authorize(ActProfileUpdate, RelUser, RelSelf); err != nil {
		return err
	}
	ctx := r.Context()
	uid := me(r)
	err := s.store.UpdateProfile(ctx, uid, store.ProfileUpdate{Nickname: req.Nickname, Avatar: req.Avatar})
	if errors.Is(err, store.ErrNotFound) {
		return errUnauthorized // the token's user no longer exists
	}
	if err != nil {
		return fmt.Errorf("update profile: %w", err)
	}
	relationChanges.WithLabelValues(string(ActProfileUpdate)).Inc()
	u, err := s.store.UserByID(ctx, uid)
	if err != nil {
		return fmt.Errorf("update profile: %w", err)
	}
	return writeJSON(w, http.StatusOK, profileOf(u))
}

type deviceJSON struct {
	DeviceID      string `json:"device_id"`
	Platform      string `json:"platform"`
	LastLoginAtMS int64  `json:"last_login_at_ms"`
	Current       bool   `json:"current"` // the device of the token of this request
}

type devicesResp struct {
	Devices []deviceJSON `json:"devices"`
}

// GET /api/v1/users/me/devices -> {"devices": [...]}, most recent login first
func (s *Service) handleMyDevices(w http.ResponseWriter, r *http.Request) error {
	if err := authorize(ActDevicesList, RelUser, RelSelf); err != nil {
		return err
	}
	claims := claimsFrom(r.Context())
	devs, err := s.store.Devices(r.Context(), claims.UserID)
	if err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	resp := devicesResp{Devices: make([]deviceJSON, len(devs))}
	for i, d := range devs {
		resp.Devices[i] = deviceJSON{DeviceID: d.DeviceID, Platform: d.Platform, LastLoginAtMS: d.LastLoginAt.UnixMilli(), Current: d.DeviceID == claims.DeviceID}
	}
	return writeJSON(w, http.StatusOK, resp)
}

// userJSON is the short profile embedded in lists.
type userJSON struct {
	UserID   int64  `json:"user_id"`
	Username string `json:"username"`
	Nickname string `json:"nickname"`
	Avatar   string `json:"avatar"`
}

func shortProfile(u *store.User) *userJSON {
	if u == nil {
		return nil
	}
	return &userJSON{UserID: u.ID, Username: u.Username, Nickname: u.Nickname, Avatar: u.Avatar}
}

package logic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

var (
	errRateLimited = &apiError{http.StatusTooManyRequests, protocol.CodeRateLimited, "too many friend requests, retry later"}
	errNotPending  = &apiError{http.StatusConflict, protocol.CodeConflict, "the friend request is no longer pending"}
)

// storeErr maps the store's sentinel errors to API errors.
func storeErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return &apiError{http.StatusNotFound, protocol.CodeNotFound, what + " not found"}
	case errors.Is(err, store.ErrGroupDismissed):
		return errGroupDismissed
	case errors.Is(err, store.ErrGroupFull):
		return errGroupFull
	case errors.Is(err, store.ErrConflict):
		return &apiError{http.StatusConflict, protocol.CodeConflict, what + ": conflicting change, reload and retry"}
	case errors.Is(err, store.ErrInvalid):
		return errBadRequest(err.Error())
	}
	return fmt.Errorf("%s: %w", what, err)
}

// userExists reports whether a user id is known.
func (s *Service) userExists(ctx context.Context, id int64) (bool, error) {
	_, err := s.store.UserByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("user lookup: %w", err)
	}
	return true, nil
}

func errUnknownUser(id int64) error {
	return &apiError{http.StatusNotFound, protocol.CodeNotFound, fmt.Sprintf("user %d not found", id)}
}

// isFriend reports whether friendID is on userID's friend list.
func (s *Service) isFriend(ctx context.Context, userID, friendID int64) (bool, error) {
	_, err := s.rel.Friend(ctx, userID, friendID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("friend lookup: %w", err)
	}
	return true, nil
}

// requestJSON is a friend request.
type requestJSON struct {
	RequestID   int64     `json:"request_id"`
	FromUser    int64     `json:"from_user"`
	ToUser      int64     `json:"to_user"`
	Message     string    `json:"message"`
	Status      string    `json:"status"` // pending, accepted, rejected
	CreatedAtMS int64     `json:"created_at_ms"`
	UpdatedAtMS int64     `json:"updated_at_ms"`
	User        *userJSON `json:"user,omitempty"` // the other party's profile (lists)
}

func requestStatus(st store.FriendRequestStatus) string {
	switch st {
	case store.RequestPending:
		return "pending"
	case store.RequestAccepted:
		return "accepted"
	case store.RequestRejected:
		return "rejected"
	}
	return "unknown"
}

func requestOf(fr *store.FriendRequest) requestJSON {
	return requestJSON{
		RequestID:   fr.ID,
		FromUser:    fr.FromUser,
		ToUser:      fr.ToUser,
		Message:     fr.Message,
		Status:      requestStatus(fr.Status),
		CreatedAtMS: fr.CreatedAt.UnixMilli(),
		UpdatedAtMS: fr.UpdatedAt.UnixMilli(),
	}
}

type friendRequestReq struct {
	ToUser  int64  `json:"to_user"`
	Message string `json:"message"`
}

type friendRequestResp struct {
	RequestID int64 `json:"request_id"`
	Merged    bool  `json:"merged"`
}

// POST /api/v1/friends/requests {"to_user", "message"} -> {"request_id", "merged"}
func (s *Service) handleFriendRequest(w http.ResponseWriter, r *http.Request) error {
	var req friendRequestReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.ToUser <= 0 {
		return errBadRequest("to_user must be a positive user id")
	}
	if !validText(req.Message, maxRequestMsgLen, true) {
		return errBadRequest(fmt.Sprintf("message must be at most %d characters", maxRequestMsgLen))
	}
	ctx := r.Context()
	uid := me(r)
	rel := RelStranger
	if req.ToUser == uid {
		rel = RelSelf
	} else {
		ok, err := s.userExists(ctx, req.ToUser)
		if err != nil {
			return err
		}
		if !ok {
			return errUnknownUser(req.ToUser)
		}
		blocked, err := s.rel.IsBlocked(ctx, req.ToUser, uid)
		if err != nil {
			return fmt.Errorf("friend request: %w", err)
		}
		if blocked {
			rel = RelBlocker
		} else if blocking, err := s.rel.IsBlocked(ctx, uid, req.ToUser); err != nil {
			return fmt.Errorf("friend request: %w", err)
		} else if blocking {
			rel = RelBlocked
		} else if ok, err := s.isFriend(ctx, uid, req.ToUser); err != nil {
			return err
		} else if ok {
			rel = RelFriend
		}
	}
	if err := authorize(ActFriendRequest, RelUser, rel); err != nil {
		return err
	}
	if s.limiter != nil && !s.limiter.allow(uid, s.now()) {
		return errRateLimited
	}
	fr, merged, err := s.rel.CreateFriendRequest(ctx, uid, req.ToUser, req.Message)
	if errors.Is(err, store.ErrConflict) {
		return authorize(ActFriendRequest, RelUser, RelFriend) // befriended meanwhile
	}
	if err != nil {
		return storeErr(err, "friend request")
	}
	relationChanges.WithLabelValues(string(ActFriendRequest)).Inc()

	sctx, cancel := afterCommit(ctx)
	defer cancel()
	ev := friendRequestEvent{Type: evFriendRequest, Request: requestOf(fr), Merged: merged, CreatedAtMS: fr.CreatedAt.UnixMilli()}
	if u, err := s.store.UserByID(sctx, uid); err == nil {
		ev.Request.User = shortProfile(u)
	}
	s.emit(sctx, evFriendRequest, []int64{fr.ToUser}, ev)
	return writeJSON(w, http.StatusOK, friendRequestResp{RequestID: fr.ID, Merged: merged})
}

type requestsResp struct {
	Incoming []requestJSON `json:"incoming"`
	Outgoing []requestJSON `json:"outgoing"`
}

// GET /api/v1/friends/requests?limit= -> {"incoming": [...], "outgoing": [...]}, newest first
func (s *Service) handleFriendRequests(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryInt(r, "limit", defaultRequestLimit)
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = defaultRequestLimit
	}
	limit = min(limit, maxListLimit)
	ctx := r.Context()
	uid := me(r)
	in, out, err := s.rel.FriendRequests(ctx, uid, int(limit))
	if err != nil {
		return fmt.Errorf("friend requests: %w", err)
	}
	ids := make([]int64, 0, len(in)+len(out))
	for _, fr := range in {
		ids = append(ids, fr.FromUser)
	}
	for _, fr := range out {
		ids = append(ids, fr.ToUser)
	}
	users, err := s.store.UsersByIDs(ctx, ids)
	if err != nil {
		return fmt.Errorf("friend requests: %w", err)
	}
	resp := requestsResp{Incoming: make([]requestJSON, len(in)), Outgoing: make([]requestJSON, len(out))}
	for i := range in {
		resp.Incoming[i] = requestOf(&in[i])
		resp.Incoming[i].User = shortProfile(users[in[i].FromUser])
	}
	for i := range out {
		resp.Outgoing[i] = requestOf(&out[i])
		resp.Outgoing[i].User = shortProfile(users[out[i].ToUser])
	}
	return writeJSON(w, http.StatusOK, resp)
}

// POST /api/v1/friends/requests/{id}/accept -> the request
func (s *Service) handleAcceptRequest(w http.ResponseWriter, r *http.Request) error {
	return s.resolveRequest(w, r, true)
}

// POST /api/v1/friends/requests/{id}/reject -> the request
func (s *Service) handleRejectRequest(w http.ResponseWriter, r *http.Request) error {
	return s.resolveRequest(w, r, false)
}

func (s *Service) resolveRequest(w http.ResponseWriter, r *http.Request, accept bool) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	ctx := r.Context()
	uid := me(r)
	fr, err := s.rel.FriendRequest(ctx, id)
	if err != nil {
		return storeErr(err, "friend request")
	}
	actor := RelThird
	switch uid {
	case fr.ToUser:
		actor = RelRecipient
	case fr.FromUser:
		actor = RelSender
	}
	action, target := ActRequestReject, RelNone
	if accept {
		action, target = ActRequestAccept, RelStranger
		if actor == RelRecipient {
			blocked, err := s.rel.IsBlocked(ctx, fr.FromUser, uid)
			if err != nil {
				return fmt.Errorf("accept: %w", err)
			}
			if blocked {
				target = RelBlocker
			}
		}
	}
	if err := authorize(action, actor, target); err != nil {
		return err
	}
	if fr.Status != store.RequestPending {
		return errNotPending
	}
	fr, err = s.rel.ResolveFriendRequest(ctx, id, accept)
	if errors.Is(err, store.ErrConflict) {
		return errNotPending
	}
	if err != nil {
		return storeErr(err, "friend request")
	}
	relationChanges.WithLabelValues(string(action)).Inc()
	if accept {
		sctx, cancel := afterCommit(ctx)
		defer cancel()
		s.invalidate("friend", s.cache.InvalidateFriend(sctx, fr.FromUser, fr.ToUser))
		s.emitFriendAdded(sctx, fr, uid)
	}
	return writeJSON(w, http.StatusOK, requestOf(fr))
}

// emitFriendAdded tells both sides of an accepted request, each with its
// own friend-list version.
func (s *Service) emitFriendAdded(ctx context.Context, fr *store.FriendRequest, by int64) {
	for _, side := range [2][2]int64{{fr.FromUser, fr.ToUser}, {fr.ToUser, fr.FromUser}} {
		ev := friendEvent{Type: evFriendAdded, FriendID: side[1], By: by, RequestID: fr.ID}
		if f, err := s.rel.Friend(ctx, side[0], side[1]); err == nil {
			ev.Version = f.Version
		}
		s.emit(ctx, evFriendAdded, []int64{side[0]}, ev)
	}
}

// friendJSON is an entry of the friend list.
type friendJSON struct {
	UserID      int64  `json:"user_id"`
	Username    string `json:"username,omitempty"`
	Nickname    string `json:"nickname,omitempty"`
	Avatar      string `json:"avatar,omitempty"`
	Remark      string `json:"remark"`
	Version     int64  `json:"version"`
	CreatedAtMS int64  `json:"created_at_ms"`
	Deleted     bool   `json:"deleted,omitempty"` // a tombstone (incremental lists only)
}

type friendsResp struct {
	Friends []friendJSON `json:"friends"`
	Version int64        `json:"version"`
	Full    bool         `json:"full"`
}

// GET /api/v1/friends?since_version=V -> {"friends", "version", "full"}
func (s *Service) handleFriends(w http.ResponseWriter, r *http.Request) error {
	since, err := queryInt(r, "since_version", 0)
	if err != nil {
		return err
	}
	ctx := r.Context()
	ch, err := s.rel.FriendChanges(ctx, me(r), since)
	if err != nil {
		return fmt.Errorf("friends: %w", err)
	}
	ids := make([]int64, 0, len(ch.Items))
	for _, f := range ch.Items {
		if !f.Deleted {
			ids = append(ids, f.FriendID)
		}
	}
	users, err := s.store.UsersByIDs(ctx, ids)
	if err != nil {
		return fmt.Errorf("friends: %w", err)
	}
	resp := friendsResp{Friends: make([]friendJSON, len(ch.Items)), Version: ch.Version, Full: ch.Full}
	for i, f := range ch.Items {
		fj := friendJSON{UserID: f.FriendID, Remark: f.Remark, Version: f.Version, CreatedAtMS: f.CreatedAt.UnixMilli(), Deleted: f.Deleted}
		if f.Deleted {
			fj.Remark = ""
		} else if u := users[f.FriendID]; u != nil {
			fj.Username, fj.Nickname, fj.Avatar = u.Username, u.Nickname, u.Avatar
		}
		resp.Friends[i] = fj
	}
	return writeJSON(w, http.StatusOK, resp)
}

// friendRel is the relation of userID to friendID for remark and delete.
func (s *Service) friendRel(ctx context.Context, userID, friendID int64) (Rel, error) {
	if userID == friendID {
		return RelNotFriend, nil
	}
	ok, err := s.isFriend(ctx, userID, friendID)
	if err != nil {
		return "", err
	}
	if ok {
		return RelFriend, nil
	}
	return RelNotFriend, nil
}

type remarkReq struct {
	Remark *string `json:"remark"`
}

// PATCH /api/v1/friends/{user_id} {"remark"} -> 204
func (s *Service) handleFriendRemark(w http.ResponseWriter, r *http.Request) error {
	fid, err := pathID(r, "user_id")
	if err != nil {
		return err
	}
	var req remarkReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Remark == nil {
		return errBadRequest("remark is required (empty clears it)")
	}
	if !validText(*req.Remark, maxRemarkLen, false) {
		return errBadRequest(fmt.Sprintf("remark must be at most %d characters without control characters", maxRemarkLen))
	}
	ctx := r.Context()
	uid := me(r)
	rel, err := s.friendRel(ctx, uid, fid)
	if err != nil {
		return err
	}
	if err := authorize(ActFriendRemark, RelUser, rel); err != nil {
		return err
	}
	if err := s.rel.SetFriendRemark(ctx, uid, fid, *req.Remark); err != nil {
		return storeErr(err, "friend")
	}
	relationChanges.WithLabelValues(string(ActFriendRemark)).Inc()
	// A remark is not cached (the send path does not read it): no
	// invalidation. The actor's other devices learn it by incremental sync.
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// DELETE /api/v1/friends/{user_id} -> 204
func (s *Service) handleDeleteFriend(w http.ResponseWriter, r *http.Request) error {
	fid, err := pathID(r, "user_id")
	if err != nil {
		return err
	}
	ctx := r.Context()
	uid := me(r)
	rel, err := s.friendRel(ctx, uid, fid)
	if err != nil {
		return err
	}
	if err := authorize(ActFriendDelete, RelUser, rel); err != nil {
		return err
	}
	if err := s.rel.DeleteFriend(ctx, uid, fid); err != nil {
		return storeErr(err, "friend")
	}
	relationChanges.WithLabelValues(string(ActFriendDelete)).Inc()
	sctx, cancel := afterCommit(ctx)
	defer cancel()
	s.invalidate("friend", s.cache.InvalidateFriend(sctx, uid, fid))
	for _, side := range [2][2]int64{{uid, fid}, {fid, uid}} {
		s.emit(sctx, evFriendRemoved, []int64{side[0]}, friendEvent{Type: evFriendRemoved, FriendID: side[1], By: uid})
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// blockJSON is an entry of the block list.
type blockJSON struct {
	UserID      int64  `json:"user_id"`
	Username    string `json:"username"`
	Nickname    string `json:"nickname"`
	Avatar      string `json:"avatar"`
	CreatedAtMS int64  `json:"created_at_ms"`
}

type blocksResp struct {
	Blocks []blockJSON `json:"blocks"`
}

// blockRel is the relation of a block target: self, or another existing user.
func (s *Service) blockRel(ctx context.Context, uid, target int64) (Rel, error) {
	if uid == target {
		return RelSelf, nil
	}
	ok, err := s.userExists(ctx, target)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errUnknownUser(target)
	}
	return RelOther, nil
}

// PUT /api/v1/blocks/{user_id} -> 204
func (s *Service) handleBlock(w http.ResponseWriter, r *http.Request) error {
	return s.setBlock(w, r, true)
}

// DELETE /api/v1/blocks/{user_id} -> 204
func (s *Service) handleUnblock(w http.ResponseWriter, r *http.Request) error {
	return s.setBlock(w, r, false)
}

func (s *Service) setBlock(w http.ResponseWriter, r *http.Request, block bool) error {
	target, err := pathID(r, "user_id")
	if err != nil {
		return err
	}
	ctx := r.Context()
	uid := me(r)
	rel, err := s.blockRel(ctx, uid, target)
	if err != nil {
		return err
	}
	action := ActBlockRemove
	if block {
		action = ActBlockAdd
	}
	if err := authorize(action, RelUser, rel); err != nil {
		return err
	}
	if block {
		err = s.rel.BlockUser(ctx, uid, target)
	} else {
		err = s.rel.UnblockUser(ctx, uid, target)
	}
	if err != nil {
		return storeErr(err, "block")
	}
	relationChanges.WithLabelValues(string(action)).Inc()
	sctx, cancel := afterCommit(ctx)
	defer cancel()
	s.invalidate("block", s.cache.InvalidateBlock(sctx, uid, target))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// GET /api/v1/blocks -> {"blocks": [...]}, newest first
func (s *Service) handleBlocks(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	list, err := s.rel.BlockList(ctx, me(r))
	if err != nil {
		return fmt.Errorf("blocks: %w", err)
	}
	ids := make([]int64, len(list))
	for i, b := range list {
		ids[i] = b.BlockedID
	}
	users, err := s.store.UsersByIDs(ctx, ids)
	if err != nil {
		return fmt.Errorf("blocks: %w", err)
	}
	resp := blocksResp{Blocks: make([]blockJSON, len(list))}
	for i, b := range list {
		bj := blockJSON{UserID: b.BlockedID, CreatedAtMS: b.CreatedAt.UnixMilli()}
		if u := users[b.BlockedID]; u != nil {
			bj.Username, bj.Nickname, bj.Avatar = u.Username, u.Nickname, u.Avatar
		}
		resp.Blocks[i] = bj
	}
	return writeJSON(w, http.StatusOK, resp)
}

// dedupe sorts ids and removes duplicates and drop.
func dedupe(ids []int64, drop int64) []int64 {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	return slices.DeleteFunc(ids, func(id int64) bool { return id == drop })
}

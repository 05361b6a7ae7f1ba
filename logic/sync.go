package logic

import (
	"context"
	"errors"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// Page limits of Sync and history (PROTOCOL.md section 5) and of the
// conversation list.
const (
	defaultPageLimit  = 50
	maxPageLimit      = 200
	defaultConvsLimit = 200
	maxConvsLimit     = store.MaxPageLimit - 1 // one more is read to learn has_more
)

// clampLimit applies a default and a ceiling to a requested page size (0
// or negative: the default; above the ceiling: the ceiling).
func clampLimit(n, def, ceiling int) int {
	if n <= 0 {
		return def
	}
	return min(n, ceiling)
}

// syncReq is the SyncReq body of Op 18.
type syncReq struct {
	ConversationID string `json:"conversation_id"`
	AfterSeq       int64  `json:"after_seq"`
	BeforeSeq      int64  `json:"before_seq"`
	Limit          int    `json:"limit"`
	Conversations  bool   `json:"conversations"`
	Cursor         string `json:"cursor"` // conversation list: next_cursor of the previous page
}

// syncMessagesJSON is the SyncResp of a message page (also the HTTP
// history answer).
type syncMessagesJSON struct {
	Code     int           `json:"code"`
	Messages []messageJSON `json:"messages"`
	HasMore  bool          `json:"has_more"`
}

// syncConversationsJSON is the SyncResp of the conversation list (also
// the answer of GET /api/v1/conversations).
type syncConversationsJSON struct {
	Code          int                `json:"code"`
	Conversations []conversationJSON `json:"conversations"`
	TotalUnread   int64              `json:"total_unread"`
	HasMore       bool               `json:"has_more"`
	NextCursor    string             `json:"next_cursor,omitempty"` // set when has_more
}

// participant checks that user may read and write convID's cursors: one
// of the two users of a one-to-one conversation, a current member of a
// group.
func (s *Service) participant(ctx context.Context, user int64, convID string) (store.ConversationKind, int64, int64, *codeError) {
	kind, a, b, err := store.ParseConversationID(convID)
	if err != nil {
		return 0, 0, 0, refuse(protocol.CodeBadRequest, "bad conversation_id")
	}
	if kind == store.ConversationPair {
		if user != a && user != b {
			return 0, 0, 0, refuse(protocol.CodeForbidden, "not a participant of this conversation")
		}
		return kind, a, b, nil
	}
	ms, err := s.checker.Membership(ctx, a, user)
	if err != nil {
		return 0, 0, 0, s.lookupFailed("membership", err)
	}
	if !ms.GroupExists {
		return 0, 0, 0, refuse(protocol.CodeNotFound, "no such group")
	}
	if !ms.IsMember {
		return 0, 0, 0, refuse(protocol.CodeNotMember, "you are not a member of this group")
	}
	return kind, a, b, nil
}

// storeRefusal maps a store error of the message path to a refusal.
func (s *Service) storeRefusal(what string, err error) *codeError {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(protocol.CodeNotFound, what+" not found")
	case errors.Is(err, store.ErrInvalid):
		return refuse(protocol.CodeBadRequest, err.Error())
	case errors.Is(err, store.ErrConflict):
		return refuse(protocol.CodeConflict, what+": conflict")
	}
	return s.lookupFailed(what, err)
}

// history returns a page of convID for user.
func (s *Service) history(ctx context.Context, user int64, convID string, after, before int64, limit int) (syncMessagesJSON, *codeError) {
	if after < 0 || before < 0 {
		return syncMessagesJSON{}, refuse(protocol.CodeBadRequest, "after_seq and before_seq must not be negative")
	}
	if _, _, _, cerr := s.participant(ctx, user, convID); cerr != nil {
		return syncMessagesJSON{}, cerr
	}
	msgs, more, err := s.pageMessages(ctx, convID, after, before, clampLimit(limit, defaultPageLimit, maxPageLimit))
	if err != nil {
		return syncMessagesJSON{}, s.storeRefusal("messages", err)
	}
	return syncMessagesJSON{Messages: toMessagesJSON(msgs), HasMore: more}, nil
}

// conversations returns a page of user's conversation list (from cursor,
// "" for the first page) and the total unread.
func (s *Service) conversations(ctx context.Context, user int64, limit int, cursor string) (syncConversationsJSON, *codeError) {
	after, cerr := parseConvCursor(cursor)
	if cerr != nil {
		return syncConversationsJSON{}, cerr
	}
	if err := s.ensureLargeGroupEntries(ctx, user); err != nil {
		return syncConversationsJSON{}, s.lookupFailed("large groups", err)
	}
	limit = clampLimit(limit, defaultConvsLimit, maxConvsLimit)
	cs, err := s.msgs.ConversationsAfter(ctx, user, after, min(limit+1, store.MaxPageLimit))
	if err != nil {
		return syncConversationsJSON{}, s.storeRefusal("conversations", err)
	}
	out := syncConversationsJSON{HasMore: len(cs) > limit}
	if out.HasMore {
		cs = cs[:limit]
		out.NextCursor = convCursor(&cs[len(cs)-1])
	}
	if out.TotalUnread, err = s.unreadCounts(ctx, user, cs); err != nil {
		return syncConversationsJSON{}, s.storeRefusal("unread", err)
	}
	out.Conversations = toConversationsJSON(cs)
	return out, nil
}

// opSync handles Op 18.
func (s *Service) opSync(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	var r syncReq
	var v any
	cerr := decodeBody(req.Packet.Body, &r)
	if cerr == nil {
		if r.Conversations {
			v, cerr = s.conversations(ctx, req.UserID, r.Limit, r.Cursor)
		} else {
			v, cerr = s.history(ctx, req.UserID, r.ConversationID, r.AfterSeq, r.BeforeSeq, r.Limit)
		}
	}
	return replyPacket(req, protocol.OpSyncReply, v, cerr)
}

// decodeBody decodes a JSON object packet body.
func decodeBody(body []byte, v any) *codeError {
	i := 0
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n') {
		i++
	}
	if i == len(body) || body[i] != '{' {
		return refuse(protocol.CodeBadRequest, "body must be a JSON object")
	}
	if err := sonic.Unmarshal(body, v); err != nil {
		return refuse(protocol.CodeBadRequest, "invalid JSON: "+err.Error())
	}
	return nil
}

// replyPacket encodes the reply op with v, or with cerr's error body.
func replyPacket(req *comet.ReceiveRequest, op int32, v any, cerr *codeError) (*protocol.Packet, error) {
	p := &protocol.Packet{Ver: req.Packet.Ver, Op: op, Seq: req.Packet.Seq}
	if cerr != nil {
		p.Body = cerr.replyBody()
		return p, nil
	}
	b, err := sonic.Marshal(v)
	if err != nil {
		return nil, err
	}
	p.Body = b
	return p, nil
}

package logic

import (
	"net/http"
)

// HTTP API of messaging (docs/openapi.yaml, tag messages). The handlers
// share the validation and effects of the Receive ops (send.go, sync.go,
// ack.go) and recall (recall.go).

// handleSendMessage: POST /api/v1/messages, SendReq -> SendAck.
func (s *Service) handleSendMessage(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	ack, _, cerr := s.sendMessage(r.Context(), me(r), "", body)
	if cerr != nil {
		return cerr.apiErr()
	}
	return writeJSON(w, http.StatusOK, ack)
}

// handleRecall: POST /api/v1/messages/{msg_id}/recall.
func (s *Service) handleRecall(w http.ResponseWriter, r *http.Request) error {
	out, cerr := s.recallMessage(r.Context(), me(r), r.PathValue("msg_id"))
	if cerr != nil {
		return cerr.apiErr()
	}
	return writeJSON(w, http.StatusOK, out)
}

// handleConversations: GET /api/v1/conversations?limit=&cursor=.
func (s *Service) handleConversations(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryInt(r, "limit", 0)
	if err != nil {
		return err
	}
	out, cerr := s.conversations(r.Context(), me(r), int(min(limit, maxConvsLimit)), r.URL.Query().Get("cursor"))
	if cerr != nil {
		return cerr.apiErr()
	}
	return writeJSON(w, http.StatusOK, conversationsAnswer{
		Conversations: out.Conversations, TotalUnread: out.TotalUnread, HasMore: out.HasMore, NextCursor: out.NextCursor,
	})
}

type conversationsAnswer struct {
	Conversations []conversationJSON `json:"conversations"`
	TotalUnread   int64              `json:"total_unread"`
	HasMore       bool               `json:"has_more"`
	NextCursor    string             `json:"next_cursor,omitempty"`
}

type messagesAnswer struct {
	Messages []messageJSON `json:"messages"`
	HasMore  bool          `json:"has_more"`
}

// handleHistory: GET /api/v1/conversations/{id}/messages?after_seq=&before_seq=&limit=.
func (s *Service) handleHistory(w http.ResponseWriter, r *http.Request) error {
	after, err := queryInt(r, "after_seq", 0)
	if err != nil {
		return err
	}
	before, err := queryInt(r, "before_seq", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 0)
	if err != nil {
		return err
	}
	out, cerr := s.history(r.Context(), me(r), r.PathValue("id"), after, before, int(min(limit, maxPageLimit)))
	if cerr != nil {
		return cerr.apiErr()
	}
	return writeJSON(w, http.StatusOK, messagesAnswer{Messages: out.Messages, HasMore: out.HasMore})
}

type readReq struct {
	Seq *int64 `json:"seq"`
}

type readAnswer struct {
	ReadSeq int64 `json:"read_seq"`
	Unread  int64 `json:"unread"`
	MaxSeq  int64 `json:"max_seq"`
}

// handleRead: POST /api/v1/conversations/{id}/read {"seq"}.
func (s *Service) handleRead(w http.ResponseWriter, r *http.Request) error {
	var req readReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Seq == nil {
		return errBadRequest("seq is required")
	}
	st, cerr := s.markRead(r.Context(), me(r), "", r.PathValue("id"), *req.Seq)
	if cerr != nil {
		return cerr.apiErr()
	}
	return writeJSON(w, http.StatusOK, readAnswer{ReadSeq: st.ReadSeq, Unread: st.Unread, MaxSeq: st.MaxSeq})
}

type readCountAnswer struct {
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	ReadCount      int    `json:"read_count"`
}

// handleReadCount: GET /api/v1/conversations/{id}/messages/{seq}/reads.
func (s *Service) handleReadCount(w http.ResponseWriter, r *http.Request) error {
	seq, err := pathID(r, "seq")
	if err != nil {
		return err
	}
	conv := r.PathValue("id")
	if _, _, _, cerr := s.participant(r.Context(), me(r), conv); cerr != nil {
		return cerr.apiErr()
	}
	n, cerr := s.readCount(r.Context(), conv, seq)
	if cerr != nil {
		return cerr.apiErr()
	}
	return writeJSON(w, http.StatusOK, readCountAnswer{ConversationID: conv, Seq: seq, ReadCount: n})
}

type muteReq struct {
	Muted *bool `json:"muted"`
}

type muteAnswer struct {
	ConversationID string `json:"conversation_id"`
	Muted          bool   `json:"muted"`
}

// handleMuteConversation: PUT /api/v1/conversations/{id}/mute {"muted"}.
func (s *Service) handleMuteConversation(w http.ResponseWriter, r *http.Request) error {
	var req muteReq
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Muted == nil {
		return errBadRequest("muted is required")
	}
	conv := r.PathValue("id")
	if _, _, _, cerr := s.participant(r.Context(), me(r), conv); cerr != nil {
		return cerr.apiErr()
	}
	if err := s.msgs.SetConversationMuted(r.Context(), me(r), conv, *req.Muted); err != nil {
		return s.storeRefusal("conversation", err).apiErr()
	}
	if s.unread != nil { // the total changes: rebuilt when next read
		ctx, cancel := afterCommit(r.Context())
		s.unreadInvalidate(ctx, me(r))
		cancel()
	}
	return writeJSON(w, http.StatusOK, muteAnswer{ConversationID: conv, Muted: *req.Muted})
}

package logic

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// Op 22 event types of messaging (PROTOCOL.md section 3).
const (
	evMessage = "message"
	evRecall  = "recall"
	evRead    = "read"
	evTyping  = "typing"
)

// messageJSON is a message as carried by events, Sync and history
// (PROTOCOL.md "Message"). Content is absent for a recalled message.
type messageJSON struct {
	MsgID          string          `json:"msg_id"`
	ConversationID string          `json:"conversation_id"`
	Seq            int64           `json:"seq"`
	SenderID       int64           `json:"sender_id"`
	ReceiverID     int64           `json:"receiver_id"`
	GroupID        int64           `json:"group_id"`
	Type           int             `json:"type"`
	Content        json.RawMessage `json:"content,omitempty"`
	ClientMsgID    string          `json:"client_msg_id"`
	Mentions       []int64         `json:"mentions,omitempty"`
	Status         int             `json:"status"`
	CreatedAtMS    int64           `json:"created_at_ms"`
}

func toMessageJSON(m *store.Message) messageJSON {
	j := messageJSON{
		MsgID:          strconv.FormatInt(m.ID, 10),
		ConversationID: m.ConversationID,
		Seq:            m.Seq,
		SenderID:       m.SenderID,
		ReceiverID:     m.ReceiverID,
		GroupID:        m.GroupID,
		Type:           m.Type,
		ClientMsgID:    m.ClientMsgID,
		Mentions:       m.Mentions,
		Status:         m.Status,
		CreatedAtMS:    m.CreatedAt.UnixMilli(),
	}
	if m.Status == store.StatusNormal && len(m.Content) > 0 {
		j.Content = json.RawMessage(m.Content)
	}
	return j
}

func toMessagesJSON(ms []store.Message) []messageJSON {
	out := make([]messageJSON, len(ms))
	for i := range ms {
		out[i] = toMessageJSON(&ms[i])
	}
	return out
}

// sendAckJSON is the Op 5 body and the answer of POST /api/v1/messages.
type sendAckJSON struct {
	Code           int    `json:"code"` // 0
	ClientMsgID    string `json:"client_msg_id"`
	MsgID          string `json:"msg_id"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	CreatedAtMS    int64  `json:"created_at_ms"`
}

// sendRefusalJSON is a refused SendAck.
type sendRefusalJSON struct {
	Code        string `json:"code"`
	Message     string `json:"message"`
	ClientMsgID string `json:"client_msg_id,omitempty"`
}

// messageEvent is the Op 22 "message" event.
type messageEvent struct {
	Type    string      `json:"type"` // message
	Message messageJSON `json:"message"`
}

// recallEvent is the Op 22 "recall" event.
type recallEvent struct {
	Type           string `json:"type"` // recall
	ConversationID string `json:"conversation_id"`
	MsgID          string `json:"msg_id"`
	Seq            int64  `json:"seq"`
	NoticeSeq      int64  `json:"notice_seq"`
	By             int64  `json:"by"`
}

// readEvent is the Op 22 "read" event.
type readEvent struct {
	Type           string `json:"type"` // read
	ConversationID string `json:"conversation_id"`
	UserID         int64  `json:"user_id"`
	Seq            int64  `json:"seq"`
}

// typingEvent is the Op 22 "typing" event.
type typingEvent struct {
	Type           string `json:"type"` // typing
	ConversationID string `json:"conversation_id"`
	UserID         int64  `json:"user_id"`
}

// conversationJSON is an entry of the conversation list.
type conversationJSON struct {
	ConversationID string       `json:"conversation_id"`
	MaxSeq         int64        `json:"max_seq"`
	ReadSeq        int64        `json:"read_seq"`
	DeliveredSeq   int64        `json:"delivered_seq"`
	Unread         int64        `json:"unread"`
	Muted          bool         `json:"muted"`
	LastMessage    *messageJSON `json:"last_message,omitempty"`
	UpdatedAtMS    int64        `json:"updated_at_ms"`
}

func toConversationsJSON(cs []store.UserConversation) []conversationJSON {
	out := make([]conversationJSON, len(cs))
	for i, c := range cs {
		out[i] = conversationJSON{
			ConversationID: c.ConversationID,
			MaxSeq:         c.MaxSeq,
			ReadSeq:        c.ReadSeq,
			DeliveredSeq:   c.DeliveredSeq,
			Unread:         c.Unread,
			Muted:          c.Muted,
			UpdatedAtMS:    c.UpdatedAt.UnixMilli(),
		}
		if c.LastMessage != nil {
			m := toMessageJSON(c.LastMessage)
			out[i].LastMessage = &m
		}
	}
	return out
}

// codeError is a refusal of the message path, answered as a reply body
// {"code", "message"} over the connection and as an HTTP error with the
// code's status.
type codeError struct {
	code string
	msg  string
}

func (e *codeError) Error() string { return e.code + ": " + e.msg }

func refuse(code, msg string) *codeError { return &codeError{code: code, msg: msg} }

var (
	errMsgUnavailable = refuse(protocol.CodeUnavailable, "service unavailable, retry later")
	errMsgInternal    = refuse(protocol.CodeInternal, "internal error")
)

// httpStatus is the HTTP status of a message-path code (PROTOCOL.md
// section 5).
func httpStatus(code string) int {
	switch code {
	case protocol.CodeBadRequest:
		return http.StatusBadRequest
	case protocol.CodeUnauthorized:
		return http.StatusUnauthorized
	case protocol.CodeBlocked, protocol.CodeNotMember, protocol.CodeMuted, protocol.CodeForbidden, protocol.CodeNotFriends:
		return http.StatusForbidden
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeConflict:
		return http.StatusConflict
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// apiErr turns a codeError into the HTTP API's error.
func (e *codeError) apiErr() *apiError {
	return &apiError{status: httpStatus(e.code), code: e.code, message: e.msg}
}

// replyBody is the error body of a reply packet.
func (e *codeError) replyBody() []byte { return errorBody(e.code, e.msg) }

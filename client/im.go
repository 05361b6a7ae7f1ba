package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/protocol"
)

// Message types (PROTOCOL.md section 3). 100 and above are produced by the
// server only.
const (
	TypeText   = 1
	TypeImage  = 2
	TypeFile   = 3
	TypeVoice  = 4
	TypeVideo  = 5
	TypeCustom = 6
	// TypeRecallNotice is the system message appended by a recall; its
	// content is {"msg_id", "seq"} of the recalled message.
	TypeRecallNotice = 100
)

// Message statuses.
const (
	StatusNormal   = 0
	StatusRecalled = 1
)

// Ack kinds.
const (
	AckDelivered = "delivered"
	AckRead      = "read"
)

// Event types (Event.Type).
const (
	EventMessage       = "message"
	EventRecall        = "recall"
	EventRead          = "read"
	EventTyping        = "typing"
	EventFriendRequest = "friend_request"
	EventFriendAdded   = "friend_added"
	EventGroupChanged  = "group_changed"
	EventKicked        = "kicked"
)

// Message is a stored message, as carried by events and sync replies.
type Message struct {
	MsgID          string          `json:"msg_id"` // a string: Snowflake ids exceed 2^53
	ConversationID string          `json:"conversation_id"`
	Seq            int64           `json:"seq"`
	SenderID       int64           `json:"sender_id"`
	ReceiverID     int64           `json:"receiver_id"`
	GroupID        int64           `json:"group_id"`
	Type           int             `json:"type"`
	Content        json.RawMessage `json:"content,omitempty"`
	ClientMsgID    string          `json:"client_msg_id"`
	Status         int             `json:"status"`
	CreatedAtMs    int64           `json:"created_at_ms"`
}

// SendReq is the body of Op 4 (and of POST /api/v1/messages). Set exactly
// one of ToUser and GroupID.
type SendReq struct {
	// ClientMsgID is chosen by the client (a UUID); resending the same one
	// returns the same message (idempotent).
	ClientMsgID string          `json:"client_msg_id"`
	ToUser      int64           `json:"to_user,omitempty"`
	GroupID     int64           `json:"group_id,omitempty"`
	Type        int             `json:"type"`
	Content     json.RawMessage `json:"content"`
	Mentions    []int64         `json:"mentions,omitempty"`
}

// SendAck is the successful body of Op 5: the message is durable with Seq.
type SendAck struct {
	ClientMsgID    string `json:"client_msg_id"`
	MsgID          string `json:"msg_id"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	CreatedAtMs    int64  `json:"created_at_ms"`
}

// SyncReq is the body of Op 18: either messages of one conversation after a
// seq, or (Conversations true) the caller's conversation list.
type SyncReq struct {
	ConversationID string `json:"conversation_id,omitempty"`
	AfterSeq       int64  `json:"after_seq,omitempty"`
	Limit          int    `json:"limit,omitempty"` // server default 50, max 200
	Conversations  bool   `json:"conversations,omitempty"`
}

// Conversation is an entry of the conversation list.
type Conversation struct {
	ConversationID string   `json:"conversation_id"`
	MaxSeq         int64    `json:"max_seq"`
	ReadSeq        int64    `json:"read_seq"`
	Unread         int64    `json:"unread"`
	LastMessage    *Message `json:"last_message,omitempty"`
}

// SyncResp is the successful body of Op 19.
type SyncResp struct {
	Messages      []Message      `json:"messages,omitempty"`
	HasMore       bool           `json:"has_more"`
	Conversations []Conversation `json:"conversations,omitempty"`
}

// AckReq is the body of Op 20: moves the delivered or read cursor of a
// conversation forward.
type AckReq struct {
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	Kind           string `json:"kind"` // AckDelivered or AckRead
}

// Event is the body of Op 22. Type says which fields are set; Raw holds the
// whole body for the types whose fields are not modelled here
// (friend_request, friend_added, group_changed, kicked, ...).
type Event struct {
	Type           string   `json:"type"`
	Message        *Message `json:"message,omitempty"`         // message
	ConversationID string   `json:"conversation_id,omitempty"` // recall, read, typing
	MsgID          string   `json:"msg_id,omitempty"`          // recall
	Seq            int64    `json:"seq,omitempty"`             // recall (recalled message), read
	NoticeSeq      int64    `json:"notice_seq,omitempty"`      // recall
	UserID         int64    `json:"user_id,omitempty"`         // read, typing
	Raw            []byte   `json:"-"`
}

// ParseEvent decodes the body of an Op 22 packet. Raw aliases body.
func ParseEvent(body []byte) (Event, error) {
	var ev Event
	if err := sonic.Unmarshal(body, &ev); err != nil {
		return Event{}, fmt.Errorf("client: event: %w", err)
	}
	ev.Raw = body
	return ev, nil
}

// replyStatus is the "code" and "message" of reply bodies: code is the
// number 0 on success, else a snake_case string.
type replyStatus struct {
	Code    json.RawMessage `json:"code"`
	Message string          `json:"message"`
}

func (s replyStatus) err() error {
	code := bytes.TrimSpace(s.Code)
	if len(code) == 0 || string(code) == "0" || string(code) == `""` {
		return nil
	}
	if code[0] == '"' {
		var str string
		if err := sonic.Unmarshal(code, &str); err == nil {
			return &CodeError{Code: str, Message: s.Message}
		}
	}
	return &CodeError{Code: string(code), Message: s.Message}
}

// jsonRequest runs one JSON request whose reply carries "code", decoding the
// rest of the reply into out (which may be nil).
func (c *Client) jsonRequest(ctx context.Context, op int32, in, out any) error {
	body, err := sonic.Marshal(in)
	if err != nil {
		return fmt.Errorf("client: encode %s: %w", protocol.OpName(op), err)
	}
	p, err := c.Request(ctx, op, body)
	if err != nil {
		return err
	}
	var st replyStatus
	if err := sonic.Unmarshal(p.Body, &st); err != nil {
		return fmt.Errorf("%w: %s reply: %w", ErrProtocol, protocol.OpName(p.Op), err)
	}
	if err := st.err(); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := sonic.Unmarshal(p.Body, out); err != nil {
		return fmt.Errorf("%w: %s reply: %w", ErrProtocol, protocol.OpName(p.Op), err)
	}
	return nil
}

// SendMessage sends a message (Op 4) and waits for its SendAck (Op 5), which
// means the message is durable with its seq. A refusal (not_friends,
// blocked, muted, rate_limited, ...) is a *CodeError.
func (c *Client) SendMessage(ctx context.Context, req SendReq) (SendAck, error) {
	var ack SendAck
	err := c.jsonRequest(ctx, protocol.OpSendMsg, req, &ack)
	return ack, err
}

// Sync fetches messages after a seq or the conversation list (Op 18/19).
func (c *Client) Sync(ctx context.Context, req SyncReq) (SyncResp, error) {
	var resp SyncResp
	err := c.jsonRequest(ctx, protocol.OpSync, req, &resp)
	return resp, err
}

// Ack moves a delivered or read cursor (Op 20/21).
func (c *Client) Ack(ctx context.Context, req AckReq) error {
	return c.jsonRequest(ctx, protocol.OpAck, req, nil)
}

// Typing tells the other participants that the user is typing (Op 23). It
// is online-only and has no reply.
func (c *Client) Typing(ctx context.Context, conversationID string) error {
	body, err := sonic.Marshal(struct {
		ConversationID string `json:"conversation_id"`
	}{conversationID})
	if err != nil {
		return fmt.Errorf("client: encode typing: %w", err)
	}
	return c.Send(ctx, protocol.OpTyping, body)
}

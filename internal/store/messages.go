package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Message limits and constants every implementation enforces.
const (
	// MaxContentLen bounds a message's content (the client packet body
	// limit is 64 KiB by default; content is a part of it).
	MaxContentLen = 64 << 10
	// MaxClientMsgIDLen bounds client_msg_id (a UUID is 36).
	MaxClientMsgIDLen = 64
	// MaxMentions bounds a message's mention list.
	MaxMentions = 100
	// MaxConversationIDLen bounds a conversation id ("p_" + two int64s).
	MaxConversationIDLen = 48
	// MaxDeviceKeyLen bounds the device key of a delivered cursor.
	MaxDeviceKeyLen = 128
	// MaxAppendBatch bounds the messages of one AppendMessages call.
	MaxAppendBatch = 4096
	// MaxPageLimit bounds the limit of Messages and Conversations.
	MaxPageLimit = 1000

	// SystemTypeMin is the first server-only message type (system and
	// notification messages): they never count as unread.
	SystemTypeMin = 100
	// TypeRecallNotice is the system message appended by Recall.
	TypeRecallNotice = 100
)

// Message status.
const (
	StatusNormal   = 0
	StatusRecalled = 1
)

// Kind of a conversation, from its id.
type ConversationKind int

const (
	ConversationPair  ConversationKind = 1 // "p_<small>_<large>": one-to-one
	ConversationGroup ConversationKind = 2 // "g_<group>"
)

// Message is a stored chat message. Messages are stored once per
// conversation; each has a Snowflake ID chosen by the caller and a Seq
// allocated by the store: 1, 2, 3... per conversation, no gaps, no repeats.
type Message struct {
	ID             int64 // Snowflake msg_id, chosen by the caller, > 0
	ConversationID string
	Seq            int64 // set by AppendMessages
	SenderID       int64
	ReceiverID     int64 // the peer of a one-to-one message, else 0
	GroupID        int64 // the group of a group message, else 0
	Type           int   // 1..6 chat types; >= SystemTypeMin system messages
	Content        []byte
	ClientMsgID    string // idempotency key per sender; "" for none (system messages)
	Mentions       []int64
	Status         int       // StatusNormal or StatusRecalled (then Content is empty)
	CreatedAt      time.Time // millisecond precision; zero: set by the store

	// IndexUsers (input of AppendMessages only, never stored or read back)
	// are the users whose conversation index (their entry in
	// Conversations, unread count included) is updated in the same
	// transaction: for a one-to-one message both users, for a small group
	// every member (write diffusion of the index), sender included. Empty
	// for a large group (read diffusion): members' entries are created by
	// MarkRead and their unread counts computed when read.
	IndexUsers []int64
}

// CountsAsUnread reports whether m counts in the unread count of user.
func (m *Message) CountsAsUnread(user int64) bool {
	return m.SenderID != user && m.Type < SystemTypeMin && m.Status == StatusNormal
}

// AppendResult is the outcome of one message of AppendMessages.
type AppendResult struct {
	ID        int64 // the stored msg_id: the original one for a duplicate
	Seq       int64
	CreatedAt time.Time
	// Duplicate: (SenderID, ClientMsgID) was already stored, or appeared
	// earlier in the same batch; ID, Seq and CreatedAt are the original's
	// and nothing was written for this message.
	Duplicate bool
	// Err is non-nil when the message was refused (it wraps ErrInvalid:
	// it breaks ValidateMessage); nothing was written for it and the
	// others of the batch are unaffected.
	Err error
}

// Conversation is a conversation's shared state.
type Conversation struct {
	ID        string
	Kind      ConversationKind
	MaxSeq    int64 // the last allocated seq (recall notices included)
	LastMsgID int64 // the message holding MaxSeq
	CreatedAt time.Time
	UpdatedAt time.Time // when MaxSeq last moved
}

// UserConversation is an entry of a user's conversation list.
type UserConversation struct {
	ConversationID string
	MaxSeq         int64
	ReadSeq        int64
	DeliveredSeq   int64 // the highest delivered cursor among the user's devices
	// Unread counts the messages after ReadSeq that count as unread
	// (Message.CountsAsUnread): exact, for read diffusion too.
	Unread      int64
	Muted       bool
	LastMessage *Message // the message at MaxSeq (nil if it is missing)
	UpdatedAt   time.Time
}

// ConversationCursor is a position in a user's conversation list: the
// UpdatedAt (millisecond precision) and ConversationID of an entry.
type ConversationCursor struct {
	UpdatedAt      time.Time
	ConversationID string
}

// IsZero reports whether c is the start of the list.
func (c ConversationCursor) IsZero() bool { return c.ConversationID == "" }

// ReadState is the result of MarkRead.
type ReadState struct {
	ReadSeq  int64
	Unread   int64
	MaxSeq   int64
	Advanced bool // the cursor moved forward (send a read receipt)
}

// Messages stores messages, per-conversation seqs and users' conversation
// indexes and cursors.
//
// Unread accounting: a user's entry holds an unread count that is exact for
// the messages up to the entry's last accounted seq (write diffusion
// updates it with every append naming the user in IndexUsers); messages
// after it (read diffusion) are counted when the entry is read, so every
// read answer is exact: Unread = the number of messages with seq > ReadSeq
// that CountsAsUnread for the user.
type Messages interface {
	// AppendMessages stores msgs in one transaction (group commit; the
	// messages may belong to several conversations) and returns one result
	// per message, in order. For each conversation it allocates the seqs
	// max_seq+1, max_seq+2, ... in slice order, durably in the same
	// transaction as the inserts, and updates the conversation index of
	// each message's IndexUsers.
	//
	// Idempotent on (SenderID, ClientMsgID): a message whose key is
	// already stored, or appeared earlier in msgs, gets the original's
	// result with Duplicate set and consumes no seq. A message breaking
	// ValidateMessage gets Err (wrapping ErrInvalid) and the others are
	// stored. Any other failure fails the whole batch: the error is
	// returned, nothing is stored, and the caller retries (the retry is
	// safe: idempotency) or fails every message of the batch.
	//
	// On success each stored message's Seq (and CreatedAt, when zero) are
	// also set in msgs; duplicates and refused messages are left as given.
	AppendMessages(ctx context.Context, msgs []*Message) ([]AppendResult, error)
	// Messages returns a page of a conversation, ascending by seq, at most
	// limit (1..MaxPageLimit, else ErrInvalid) messages:
	//   - beforeSeq == 0: the first messages with seq > afterSeq; hasMore
	//     reports messages after the page.
	//   - beforeSeq > 0: the last messages with afterSeq < seq < beforeSeq
	//     (the page just below beforeSeq, for scrolling back); hasMore
	//     reports messages below the page (still above afterSeq).
	// An unknown conversation has no messages (no error).
	Messages(ctx context.Context, convID string, afterSeq, beforeSeq int64, limit int) (msgs []Message, hasMore bool, err error)
	// MessageByID returns a message, or ErrNotFound.
	MessageByID(ctx context.Context, id int64) (*Message, error)
	// MessageByClientID returns the message of (sender, clientMsgID), or
	// ErrNotFound.
	MessageByClientID(ctx context.Context, sender int64, clientMsgID string) (*Message, error)
	// Conversation returns a conversation's state, or ErrNotFound if it
	// has no message yet.
	Conversation(ctx context.Context, convID string) (*Conversation, error)
	// Conversations returns userID's conversation list, most recently
	// active conversation first (ties: by id), at most limit
	// (1..MaxPageLimit, else ErrInvalid) entries.
	Conversations(ctx context.Context, userID int64, limit int) ([]UserConversation, error)
	// ConversationsAfter is Conversations from a cursor: the entries
	// after `after` in the list's order (the zero cursor: from the
	// start). A page's cursor is its last entry's (UpdatedAt,
	// ConversationID).
	ConversationsAfter(ctx context.Context, userID int64, after ConversationCursor, limit int) ([]UserConversation, error)
	// Readers returns the users whose read cursor of convID is at or
	// beyond seq (any entry: callers filter members and the sender).
	Readers(ctx context.Context, convID string, seq int64) ([]int64, error)
	// TotalUnread returns the sum of Unread over userID's conversations
	// that are not muted.
	TotalUnread(ctx context.Context, userID int64) (int64, error)
	// MarkRead moves userID's read cursor of convID forward to seq
	// (clamped to the conversation's max_seq; a lower seq changes
	// nothing) and recomputes the unread count exactly. It creates the
	// user's entry if missing (read diffusion; seq 0 just creates it).
	// ErrNotFound for a conversation without messages, ErrInvalid for a
	// negative seq.
	MarkRead(ctx context.Context, userID int64, convID string, seq int64) (ReadState, error)
	// MarkDelivered moves the delivered cursor of one device (deviceKey)
	// of userID forward to seq (clamped to max_seq) and the user's
	// DeliveredSeq with it; advanced reports whether the device's cursor
	// moved. ErrNotFound for a conversation without messages.
	MarkDelivered(ctx context.Context, userID int64, deviceKey, convID string, seq int64) (advanced bool, err error)
	// SetConversationMuted sets the muted flag of userID's entry
	// (creating it with nothing read: read_seq 0, muting is not reading);
	// ErrNotFound for a conversation without messages.
	SetConversationMuted(ctx context.Context, userID int64, convID string, muted bool) error
	// ReadCount returns how many users' read cursors of convID are at or
	// beyond seq: in a group, how many members read the message at seq
	// (users who never marked anything read in a large group have no
	// entry and do not count; neither does the sender unless it marked
	// its own message read).
	ReadCount(ctx context.Context, convID string, seq int64) (int, error)
	// Recall soft-deletes message msgID and appends notice in one
	// transaction: the message gets StatusRecalled and empty content
	// (keeping its seq), stops counting as unread, and notice (Type
	// TypeRecallNotice, its ID, SenderID = who recalled, IndexUsers as
	// for AppendMessages; ConversationID, GroupID, ReceiverID are copied
	// from the message, Content is set to {"msg_id":"<id>","seq":<seq>})
	// gets the next seq, which counts in max_seq but not in unread. It
	// returns the recalled message and the notice's result. ErrNotFound
	// for an unknown message, ErrConflict if it is already recalled (a
	// recall is done once; no second notice).
	Recall(ctx context.Context, msgID int64, notice *Message) (*Message, AppendResult, error)
}

// PairConversationID returns the conversation id of users a and b.
func PairConversationID(a, b int64) string {
	if a > b {
		a, b = b, a
	}
	buf := make([]byte, 0, 42)
	buf = append(buf, "p_"...)
	buf = strconv.AppendInt(buf, a, 10)
	buf = append(buf, '_')
	buf = strconv.AppendInt(buf, b, 10)
	return string(buf)
}

// GroupConversationID returns the conversation id of a group.
func GroupConversationID(group int64) string {
	return "g_" + strconv.FormatInt(group, 10)
}

// ParseConversationID parses "p_<a>_<b>" (0 < a < b) or "g_<group>"
// (group > 0); for a group b is 0. Errors wrap ErrInvalid.
func ParseConversationID(id string) (kind ConversationKind, a, b int64, err error) {
	bad := func() (ConversationKind, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("%w: conversation id %.64q", ErrInvalid, id)
	}
	if len(id) > MaxConversationIDLen || len(id) < 3 || id[1] != '_' {
		return bad()
	}
	num := func(s string) (int64, bool) {
		if s == "" || s[0] == '0' || s[0] == '+' || s[0] == '-' {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil && n > 0
	}
	switch id[0] {
	case 'g':
		g, ok := num(id[2:])
		if !ok {
			return bad()
		}
		return ConversationGroup, g, 0, nil
	case 'p':
		l, r, found := strings.Cut(id[2:], "_")
		x, ok1 := num(l)
		y, ok2 := num(r)
		if !found || !ok1 || !ok2 || x >= y {
			return bad()
		}
		return ConversationPair, x, y, nil
	}
	return bad()
}

// ValidateMessage checks a message to append: a positive ID and sender, a
// valid conversation id matching ReceiverID (one-to-one: the other user)
// or GroupID (group), a positive type, content within MaxContentLen
// (non-empty), a client_msg_id of valid UTF-8 within MaxClientMsgIDLen, at
// most MaxMentions mentions, no negative IndexUsers. Errors wrap
// ErrInvalid.
func ValidateMessage(m *Message) error {
	if m == nil {
		return fmt.Errorf("%w: nil message", ErrInvalid)
	}
	kind, a, b, err := ParseConversationID(m.ConversationID)
	if err != nil {
		return err
	}
	switch {
	case m.ID <= 0:
		return fmt.Errorf("%w: msg_id %d", ErrInvalid, m.ID)
	case m.SenderID <= 0:
		return fmt.Errorf("%w: sender %d", ErrInvalid, m.SenderID)
	case m.Type <= 0:
		return fmt.Errorf("%w: type %d", ErrInvalid, m.Type)
	case len(m.Content) == 0 || len(m.Content) > MaxContentLen:
		return fmt.Errorf("%w: content length %d", ErrInvalid, len(m.Content))
	case len(m.ClientMsgID) > MaxClientMsgIDLen || !utf8.ValidString(m.ClientMsgID):
		return fmt.Errorf("%w: client_msg_id", ErrInvalid)
	case len(m.Mentions) > MaxMentions:
		return fmt.Errorf("%w: %d mentions", ErrInvalid, len(m.Mentions))
	case m.Status != StatusNormal:
		return fmt.Errorf("%w: status %d", ErrInvalid, m.Status)
	}
	switch kind {
	case ConversationPair:
		peer := a
		if m.SenderID == a {
			peer = b
		} else if m.SenderID != b && m.Type < SystemTypeMin {
			return fmt.Errorf("%w: sender %d is not in %s", ErrInvalid, m.SenderID, m.ConversationID)
		}
		if m.GroupID != 0 || (m.ReceiverID != peer && m.Type < SystemTypeMin) {
			return fmt.Errorf("%w: receiver %d / group %d do not match %s", ErrInvalid, m.ReceiverID, m.GroupID, m.ConversationID)
		}
	case ConversationGroup:
		if m.GroupID != a || m.ReceiverID != 0 {
			return fmt.Errorf("%w: group %d / receiver %d do not match %s", ErrInvalid, m.GroupID, m.ReceiverID, m.ConversationID)
		}
	}
	for _, u := range m.IndexUsers {
		if u <= 0 {
			return fmt.Errorf("%w: index user %d", ErrInvalid, u)
		}
	}
	return nil
}

// RecallNoticeContent is the content of the notice announcing the recall
// of message id at seq: {"msg_id":"<id>","seq":<seq>}.
func RecallNoticeContent(id, seq int64) []byte {
	b := make([]byte, 0, 48)
	b = append(b, `{"msg_id":"`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '}')
}

// EncodeMentions and DecodeMentions store a mention list as decimal ids
// separated by commas ("" for none): compact, and the same on every
// implementation.
func EncodeMentions(ids []int64) string {
	if len(ids) == 0 {
		return ""
	}
	b := make([]byte, 0, len(ids)*8)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(b)
}

// DecodeMentions parses what EncodeMentions wrote.
func DecodeMentions(s string) ([]int64, error) {
	if s == "" {
		return nil, nil
	}
	ids := make([]int64, 0, strings.Count(s, ",")+1)
	for f := range strings.SplitSeq(s, ",") {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("store: bad mention list %.64q: %w", s, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// ValidatePage checks a page limit.
func ValidatePage(limit int) error {
	if limit <= 0 || limit > MaxPageLimit {
		return fmt.Errorf("%w: limit %d", ErrInvalid, limit)
	}
	return nil
}

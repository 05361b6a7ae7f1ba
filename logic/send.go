package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// Chat message types clients may send (PROTOCOL.md section 3); 100 and
// above are the server's.
const (
	typeText   = 1
	typeImage  = 2
	typeFile   = 3
	typeVoice  = 4
	typeVideo  = 5
	typeCustom = 6
)

// sendReq is the SendReq body of Op 4 and POST /api/v1/messages.
type sendReq struct {
	ClientMsgID string          `json:"client_msg_id"`
	ToUser      int64           `json:"to_user"`
	GroupID     int64           `json:"group_id"`
	Type        int             `json:"type"`
	Content     json.RawMessage `json:"content"`
	Mentions    []int64         `json:"mentions"`
}

// contentShape holds the fields of a content object that are checked per
// type (a field of the wrong JSON type fails the decoding: bad_request).
type contentShape struct {
	Text       *string `json:"text"`
	FileID     string  `json:"file_id"`
	URL        string  `json:"url"`
	DurationMS int64   `json:"duration_ms"`
}

// checkContent checks a message's content against its type: a JSON object
// within MaxContentBytes, with the fields its type needs.
func (s *Service) checkContent(typ int, content []byte) *codeError {
	if len(content) > s.cfg.MaxContentBytes {
		return refuse(protocol.CodeTooLarge, "content is larger than "+strconv.Itoa(s.cfg.MaxContentBytes)+" bytes")
	}
	if len(content) == 0 || content[0] != '{' {
		return refuse(protocol.CodeBadRequest, "content must be a JSON object")
	}
	if typ == typeCustom {
		if !sonic.Valid(content) {
			return refuse(protocol.CodeBadRequest, "content is not valid JSON")
		}
		return nil
	}
	var c contentShape
	if err := sonic.Unmarshal(content, &c); err != nil {
		return refuse(protocol.CodeBadRequest, "content: "+err.Error())
	}
	switch typ {
	case typeText:
		if c.Text == nil || *c.Text == "" {
			return refuse(protocol.CodeBadRequest, `a text message needs a non-empty "text"`)
		}
	case typeImage, typeFile, typeVideo, typeVoice:
		if c.FileID == "" && c.URL == "" {
			return refuse(protocol.CodeBadRequest, `a media message needs a "file_id" or a "url"`)
		}
		if typ == typeVoice && c.DurationMS <= 0 {
			return refuse(protocol.CodeBadRequest, `a voice message needs a positive "duration_ms"`)
		}
	}
	return nil
}

// target is where a checked message goes.
type target struct {
	convID     string
	receiver   int64   // one-to-one
	group      int64   // group
	recipients []int64 // every participant (sender included): event fan-out
	index      []int64 // IndexUsers: write diffusion of the conversation index
}

// sendMessage validates and stores one message from sender (key: the
// sending connection, "" over HTTP) and returns its SendAck. It is the one
// validation path of Op 4 and POST /api/v1/messages. The returned string
// is the request's client_msg_id (also on refusal, when it was readable).
func (s *Service) sendMessage(ctx context.Context, sender int64, key string, body []byte) (sendAckJSON, string, *codeError) {
	ack, cmid, cerr := s.send(ctx, sender, key, body)
	return countSend(ack, cmid, cerr)
}

// countSend counts a send's outcome (sends) and turns the duplicate
// marker into code 0.
func countSend(ack sendAckJSON, cmid string, cerr *codeError) (sendAckJSON, string, *codeError) {
	switch {
	case cerr == ackLater:
		sends.WithLabelValues("handed_off").Inc()
	case cerr != nil:
		sends.WithLabelValues(cerr.code).Inc()
	case ack.Code == dupMarker:
		ack.Code = 0
		sends.WithLabelValues("duplicate").Inc()
	default:
		sends.WithLabelValues("ok").Inc()
	}
	return ack, cmid, cerr
}

// dupMarker marks a duplicate's ack inside sendMessage (never sent).
const dupMarker = -1

func (s *Service) send(ctx context.Context, sender int64, key string, body []byte) (sendAckJSON, string, *codeError) {
	r, ack, cmid, cerr := s.prepare(ctx, sender, key, body)
	if r == nil {
		return ack, cmid, cerr
	}
	if s.cfg.PersistOnBus {
		return s.handOff(ctx, r)
	}
	r.done = make(chan struct{})
	if err := s.commit.submit(ctx, r); err != nil {
		s.notStored(r, err)
		return sendAckJSON{}, cmid, errMsgUnavailable
	}
	ack, cerr = s.committedAck(ctx, r)
	return ack, cmid, cerr
}

// notStored logs a send whose commit failed or was not waited for.
func (s *Service) notStored(r *commitReq, err error) {
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errCommitterClosed) {
		s.log.Warn("message not stored", "sender", r.msg.SenderID, "conversation", r.msg.ConversationID, "err", err)
	}
}

// committedAck is the SendAck of a request the committer completed
// without a batch failure (r.err nil).
func (s *Service) committedAck(ctx context.Context, r *commitReq) (sendAckJSON, *codeError) {
	if r.res.Err != nil {
		return sendAckJSON{}, refuse(protocol.CodeBadRequest, r.res.Err.Error())
	}
	ack := sendAckJSON{
		ClientMsgID:    r.msg.ClientMsgID,
		MsgID:          strconv.FormatInt(r.res.ID, 10),
		ConversationID: r.msg.ConversationID,
		Seq:            r.res.Seq,
		CreatedAtMS:    r.res.CreatedAt.UnixMilli(),
	}
	if r.res.Duplicate {
		ack.Code = dupMarker
		// The client may have reused the id for another conversation:
		// answer the original's.
		if orig, err := s.msgs.MessageByID(ctx, r.res.ID); err == nil {
			ack.ConversationID = orig.ConversationID
		}
	}
	return ack, nil
}

// prepare validates a send and returns the request to commit, or (r nil)
// the answer: a refusal, or the original's SendAck for a retry that
// prepare found stored.
func (s *Service) prepare(ctx context.Context, sender int64, key string, body []byte) (*commitReq, sendAckJSON, string, *codeError) {
	var req sendReq
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, sendAckJSON{}, "", refuse(protocol.CodeBadRequest, "SendReq must be a JSON object")
	}
	if err := sonic.Unmarshal(body, &req); err != nil {
		return nil, sendAckJSON{}, "", refuse(protocol.CodeBadRequest, "invalid SendReq: "+err.Error())
	}
	// The body is only valid during the call: keep copies.
	cmid := strings.Clone(req.ClientMsgID)
	if cerr := s.checkSendReq(sender, &req, cmid); cerr != nil {
		if len(cmid) > store.MaxClientMsgIDLen || !utf8.ValidString(cmid) {
			cmid = ""
		}
		return nil, sendAckJSON{}, cmid, cerr
	}
	content := bytes.Clone(bytes.TrimSpace(req.Content))
	now := s.now()
	if s.sendLimit != nil && !s.sendLimit.allow(sender, now) {
		ack, cmid, cerr := s.retryOr(ctx, sender, key, cmid, refuse(protocol.CodeRateLimited, "too many messages, slow down"))
		return nil, ack, cmid, cerr
	}
	tg, cerr := s.checkTarget(ctx, sender, &req)
	if cerr != nil {
		ack, cmid, cerr := s.retryOr(ctx, sender, key, cmid, cerr)
		return nil, ack, cmid, cerr
	}
	m := &store.Message{
		ID:             s.ids.Next(),
		ConversationID: tg.convID,
		SenderID:       sender,
		ReceiverID:     tg.receiver,
		GroupID:        tg.group,
		Type:           req.Type,
		Content:        content,
		ClientMsgID:    cmid,
		CreatedAt:      now.Truncate(1e6),
		IndexUsers:     tg.index,
	}
	if len(req.Mentions) > 0 && tg.group != 0 {
		m.Mentions = req.Mentions
	}
	return &commitReq{msg: m, recipients: tg.recipients, key: key}, sendAckJSON{}, cmid, nil
}

// retryOr answers a send refused by the rate limit or a relation check:
// when (sender, cmid) is already stored the request is a retry of an
// acknowledged message, which gets its original SendAck whatever changed
// since (PROTOCOL.md: resending returns the same msg_id and seq); otherwise
// the refusal. The store is read only on this refusal path.
func (s *Service) retryOr(ctx context.Context, sender int64, key, cmid string, refusal *codeError) (sendAckJSON, string, *codeError) {
	orig, err := s.msgs.MessageByClientID(ctx, sender, cmid)
	if err != nil {
		return sendAckJSON{}, cmid, refusal
	}
	s.commit.publishLate(orig, key)
	ack := storedAck(orig)
	ack.Code = dupMarker
	return ack, cmid, nil
}

// storedAck is the SendAck of a message read back from the store.
func storedAck(m *store.Message) sendAckJSON {
	return sendAckJSON{ClientMsgID: m.ClientMsgID, MsgID: strconv.FormatInt(m.ID, 10), ConversationID: m.ConversationID,
		Seq: m.Seq, CreatedAtMS: m.CreatedAt.UnixMilli()}
}

// checkSendReq checks the shape of a SendReq (no I/O).
func (s *Service) checkSendReq(sender int64, req *sendReq, cmid string) *codeError {
	switch {
	case cmid == "":
		return refuse(protocol.CodeBadRequest, "client_msg_id is required (a UUID chosen by the client; retries reuse it)")
	case len(cmid) > store.MaxClientMsgIDLen || !utf8.ValidString(cmid):
		return refuse(protocol.CodeBadRequest, "client_msg_id must be valid UTF-8 of at most "+strconv.Itoa(store.MaxClientMsgIDLen)+" bytes")
	case (req.ToUser != 0) == (req.GroupID != 0):
		return refuse(protocol.CodeBadRequest, "set exactly one of to_user and group_id")
	case req.ToUser < 0 || req.GroupID < 0:
		return refuse(protocol.CodeBadRequest, "to_user and group_id must be positive")
	case req.ToUser == sender:
		return refuse(protocol.CodeBadRequest, "cannot send a message to oneself")
	case req.Type >= store.SystemTypeMin:
		return refuse(protocol.CodeBadRequest, "message types 100 and above are the server's")
	case req.Type < typeText || req.Type > typeCustom:
		return refuse(protocol.CodeBadRequest, "unknown message type "+strconv.Itoa(req.Type))
	case len(req.Mentions) > store.MaxMentions:
		return refuse(protocol.CodeBadRequest, "more than "+strconv.Itoa(store.MaxMentions)+" mentions")
	}
	for _, id := range req.Mentions {
		if id <= 0 {
			return refuse(protocol.CodeBadRequest, "mentions must be user ids")
		}
	}
	return s.checkContent(req.Type, bytes.TrimSpace(req.Content))
}

// checkTarget checks that sender may write to the request's user or
// group (relations through the checker) and returns the target.
func (s *Service) checkTarget(ctx context.Context, sender int64, req *sendReq) (target, *codeError) {
	if req.GroupID != 0 {
		return s.checkGroupTarget(ctx, sender, req.GroupID)
	}
	to := req.ToUser
	if !s.users.has(to) {
		if _, err := s.store.UserByID(ctx, to); errors.Is(err, store.ErrNotFound) {
			// PROTOCOL.md's SendAck codes have no not_found: an unknown
			// recipient is a bad request.
			return target{}, refuse(protocol.CodeBadRequest, "no such user")
		} else if err != nil {
			return target{}, s.lookupFailed("recipient", err)
		}
		s.users.add(to)
	}
	blocked, err := s.checker.IsBlocked(ctx, to, sender)
	if err != nil {
		return target{}, s.lookupFailed("block list", err)
	}
	if blocked {
		return target{}, refuse(protocol.CodeBlocked, "the recipient blocked you")
	}
	if s.cfg.RequireFriendship {
		ok, err := s.checker.IsFriend(ctx, sender, to)
		if err != nil {
			return target{}, s.lookupFailed("friendship", err)
		}
		if !ok {
			return target{}, refuse(protocol.CodeNotFriends, "you are not friends")
		}
	}
	both := []int64{sender, to}
	return target{convID: store.PairConversationID(sender, to), receiver: to, recipients: both, index: both}, nil
}

func (s *Service) checkGroupTarget(ctx context.Context, sender, group int64) (target, *codeError) {
	ms, err := s.checker.Membership(ctx, group, sender)
	if err != nil {
		return target{}, s.lookupFailed("membership", err)
	}
	switch {
	case !ms.GroupExists:
		// One is not a member of a group that does not exist (PROTOCOL.md's
		// SendAck codes have no not_found).
		return target{}, refuse(protocol.CodeNotMember, "no such group")
	case ms.GroupDismissed:
		return target{}, refuse(protocol.CodeNotMember, "the group was dismissed")
	case !ms.IsMember:
		return target{}, refuse(protocol.CodeNotMember, "you are not a member of this group")
	case !ms.MutedUntil.IsZero() && ms.MutedUntil.After(s.now()):
		return target{}, refuse(protocol.CodeMuted, "you are muted in this group")
	case ms.GroupMuteAll && ms.Role == store.RoleMember:
		return target{}, refuse(protocol.CodeMuted, "only admins may speak in this group")
	}
	members, err := s.groupMembers(ctx, group)
	if err != nil {
		return target{}, s.lookupFailed("members", err)
	}
	tg := target{convID: store.GroupConversationID(group), group: group, recipients: members}
	if len(members) <= s.cfg.LargeGroupThreshold {
		tg.index = members // write diffusion of the index
	}
	return tg, nil
}

// lookupFailed logs a failed relation or store lookup and answers
// unavailable.
func (s *Service) lookupFailed(what string, err error) *codeError {
	if !errors.Is(err, context.Canceled) {
		s.log.Warn("message check failed", "lookup", what, "err", err)
	}
	return errMsgUnavailable
}

// opSend handles Op 4: the SendAck (Op 5) is returned once the message is
// durable (the comet calls Receive sequentially per connection, so the
// messages of one connection are stored in the order sent).
func (s *Service) opSend(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	if req.Replies != nil && !s.cfg.PersistOnBus {
		return s.opSendAsync(ctx, req)
	}
	ack, cmid, cerr := s.sendMessage(withOrigin(ctx, req.Server, req.Packet.Seq), req.UserID, req.Key, req.Packet.Body)
	if cerr == ackLater {
		return nil, nil // the job pushes the SendAck once the message is durable
	}
	return sendAckPacket(req.Packet, ack, cmid, cerr)
}

// opSendAsync handles an Op 4 from an in-process comet: it validates the
// message on the caller's goroutine, queues it for commit and returns;
// the committer sends the SendAck through req.Replies once the message is
// durable (replyCommitted). The comet reads the connection's next packet
// meanwhile, so one connection can have several messages in a batch (the
// committer keeps their order).
func (s *Service) opSendAsync(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	r, ack, cmid, cerr := s.prepare(ctx, req.UserID, req.Key, req.Packet.Body)
	if r == nil {
		ack, cmid, cerr = countSend(ack, cmid, cerr)
		return sendAckPacket(req.Packet, ack, cmid, cerr)
	}
	r.replies, r.ackVer, r.ackSeq = req.Replies, req.Packet.Ver, req.Packet.Seq
	req.Replies.Later()
	if err := s.commit.enqueue(ctx, r); err != nil {
		s.notStored(r, err)
		r.err = err
		s.replyCommitted(r)
	}
	return nil, nil
}

// replyCommitted sends the SendAck of an asynchronous Op 4 (opSendAsync)
// once the committer completed it (r.err: the batch failed).
func (s *Service) replyCommitted(r *commitReq) {
	var ack sendAckJSON
	cerr := errMsgUnavailable
	if r.err == nil {
		ctx := context.Background()
		if r.res.Duplicate { // committedAck reads the original
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.CommitTimeout)
			defer cancel()
		}
		ack, cerr = s.committedAck(ctx, r)
	}
	ack, cmid, cerr := countSend(ack, r.msg.ClientMsgID, cerr)
	p, err := sendAckPacket(protocol.Packet{Ver: r.ackVer, Seq: r.ackSeq}, ack, cmid, cerr)
	if err != nil {
		s.log.Error("SendAck not encoded", "msg_id", r.msg.ID, "err", err)
		p = &protocol.Packet{Ver: r.ackVer, Op: protocol.OpSendMsgReply, Seq: r.ackSeq, Body: unavailableAckBody}
	}
	r.replies.Reply(*p)
}

// unavailableAckBody answers an Op 4 whose SendAck could not be encoded.
var unavailableAckBody = []byte(`{"code":"unavailable","message":"service unavailable, retry later"}`)

// sendAckPacket is the Op 5 answering request p: the SendAck, or the
// refusal cerr.
func sendAckPacket(p protocol.Packet, ack sendAckJSON, cmid string, cerr *codeError) (*protocol.Packet, error) {
	var body []byte
	var err error
	if cerr != nil {
		body, err = sonic.Marshal(sendRefusalJSON{Code: cerr.code, Message: cerr.msg, ClientMsgID: cmid})
	} else {
		body, err = sonic.Marshal(ack)
	}
	if err != nil {
		return nil, err
	}
	return &protocol.Packet{Ver: p.Ver, Op: protocol.OpSendMsgReply, Seq: p.Seq, Body: body}, nil
}

package logic

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// Distributed message path (docs/messaging.md "Distributed mode").
//
// With Config.PersistOnBus (set by `goim logic`), a validated send is not
// committed by the logic process: it is published on bus.TopicMsg, keyed by
// its conversation, so that one job consumer owns a conversation at a time.
// The job runs PersistHandler: the same committer (group commit, seq
// allocation in the insert transaction, idempotency on (sender,
// client_msg_id) and on msg_id) stores the batch, publishes the Op 22
// message events in seq order, pushes each Op 4 sender its SendAck through
// its comet, and only then lets the bus commit the offsets. A job that dies
// mid-batch leaves the batch uncommitted: the next owner redelivers it, the
// store answers the stored messages as duplicates of themselves (same
// msg_id), and their events and acks go out again (clients drop a seq they
// already have). Over HTTP the logic waits until the message is in the store.

// persistRecord is a validated send on bus.TopicMsg.
type persistRecord struct {
	ID          int64           `json:"id"`
	Conv        string          `json:"conv"`
	Sender      int64           `json:"sender"`
	Receiver    int64           `json:"receiver,omitempty"`
	Group       int64           `json:"group,omitempty"`
	Type        int             `json:"type"`
	Content     json.RawMessage `json:"content"`
	ClientMsgID string          `json:"cmid"`
	Mentions    []int64         `json:"mentions,omitempty"`
	CreatedAtMS int64           `json:"created_at_ms"`
	IndexUsers  []int64         `json:"index,omitempty"`
	Recipients  []int64         `json:"recipients,omitempty"`
	// The sending connection: excluded from the events; Server/Seq address
	// its SendAck (Op 4). Server is empty for an HTTP send.
	Key    string `json:"key,omitempty"`
	Server string `json:"server,omitempty"`
	Seq    int32  `json:"seq,omitempty"`
}

// origin is the connection an Op 4 came from (its comet and packet Seq).
type origin struct {
	server string
	seq    int32
}

type originKey struct{}

func withOrigin(ctx context.Context, server string, seq int32) context.Context {
	return context.WithValue(ctx, originKey{}, origin{server: server, seq: seq})
}

func originOf(ctx context.Context) (origin, bool) {
	o, ok := ctx.Value(originKey{}).(origin)
	return o, ok
}

// ackLater is returned by send in bus mode for an Op 4: the job pushes the
// SendAck once the message is durable.
var ackLater = &codeError{code: "ack_later", msg: "the SendAck follows from the job"}

// handOff publishes a validated send on bus.TopicMsg (bus mode). For an Op
// 4 it returns ackLater; over HTTP it waits until the message is stored and
// returns its SendAck.
func (s *Service) handOff(ctx context.Context, r *commitReq) (sendAckJSON, string, *codeError) {
	m := r.msg
	rec := persistRecord{ID: m.ID, Conv: m.ConversationID, Sender: m.SenderID, Receiver: m.ReceiverID, Group: m.GroupID,
		Type: m.Type, Content: m.Content, ClientMsgID: m.ClientMsgID, Mentions: m.Mentions, CreatedAtMS: m.CreatedAt.UnixMilli(),
		IndexUsers: m.IndexUsers, Recipients: r.recipients, Key: r.key}
	o, isOp := originOf(ctx)
	if isOp {
		rec.Server, rec.Seq = o.server, o.seq
	}
	b, err := sonic.Marshal(rec)
	if err != nil {
		return sendAckJSON{}, m.ClientMsgID, errMsgUnavailable
	}
	if err := s.bus.Publish(ctx, bus.Message{Topic: bus.TopicMsg, Key: m.ConversationID, Value: b}); err != nil {
		s.log.Warn("message not handed to the bus", "sender", m.SenderID, "conversation", m.ConversationID, "err", err)
		return sendAckJSON{}, m.ClientMsgID, errMsgUnavailable
	}
	if isOp {
		return sendAckJSON{}, m.ClientMsgID, ackLater
	}
	// HTTP: wait for the job to store it (the store is the truth).
	wctx, cancel := context.WithTimeout(ctx, 2*s.cfg.CommitTimeout)
	defer cancel()
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		orig, err := s.msgs.MessageByClientID(wctx, m.SenderID, m.ClientMsgID)
		if err == nil {
			return storedAck(orig), m.ClientMsgID, nil
		}
		select {
		case <-wctx.Done():
			return sendAckJSON{}, m.ClientMsgID, errMsgUnavailable
		case <-time.After(wait):
		}
	}
}

// PersistHandler returns the bus handler of bus.TopicMsg that a job runs in
// the distributed mode: it stores a batch with the committer, publishes
// its events and SendAcks, and returns nil only when all of that is done
// (the bus then commits the batch).
func (s *Service) PersistHandler() bus.Handler {
	return s.persistBatch
}

func (s *Service) persistBatch(ctx context.Context, msgs []bus.Message) error {
	reqs := make([]*commitReq, 0, len(msgs))
	for _, bm := range msgs {
		var rec persistRecord
		if err := sonic.Unmarshal(bm.Value, &rec); err != nil || rec.ID <= 0 || rec.Conv == "" {
			// Not ours to fix: skipping it is the only way forward.
			s.log.Error("malformed message on the bus skipped", "topic", bm.Topic, "key", bm.Key, "err", err)
			continue
		}
		m := &store.Message{ID: rec.ID, ConversationID: rec.Conv, SenderID: rec.Sender, ReceiverID: rec.Receiver, GroupID: rec.Group,
			Type: rec.Type, Content: []byte(rec.Content), ClientMsgID: rec.ClientMsgID, Mentions: rec.Mentions,
			CreatedAt: time.UnixMilli(rec.CreatedAtMS), IndexUsers: rec.IndexUsers}
		reqs = append(reqs, &commitReq{msg: m, recipients: rec.Recipients, key: rec.Key, ackServer: rec.Server, ackSeq: rec.Seq,
			done: make(chan struct{}), fanned: make(chan struct{})})
	}
	if len(reqs) == 0 {
		return nil
	}
	// Queue the whole batch in order (one partition: one conversation's
	// messages keep their order, hence their seqs), then wait.
	for _, r := range reqs {
		if err := s.commit.enqueue(ctx, r); err != nil {
			return err
		}
	}
	// The waits ignore ctx: the committer completes every request within
	// CommitTimeout and fan-out within its own timeout, and a job that is
	// shutting down finishes its batch rather than leave it to be redone.
	var failed error
	for _, r := range reqs {
		<-r.done
		if r.err != nil && failed == nil {
			failed = r.err
		}
	}
	if failed != nil {
		return fmt.Errorf("logic: persist batch: %w", failed) // redelivered; the stored ones come back as duplicates
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sideEffectTimeout)
	defer cancel()
	if err := s.publishAcks(actx, reqs); err != nil {
		return err
	}
	for _, r := range reqs {
		<-r.fanned
	}
	return nil
}

// publishAcks pushes the SendAck of every Op 4 of reqs to its connection.
func (s *Service) publishAcks(ctx context.Context, reqs []*commitReq) error {
	var out []bus.Message
	for _, r := range reqs {
		if r.ackServer == "" || r.key == "" {
			continue
		}
		var body []byte
		var err error
		if r.res.Err != nil {
			body, err = sonic.Marshal(sendRefusalJSON{Code: protocol.CodeBadRequest, Message: r.res.Err.Error(), ClientMsgID: r.msg.ClientMsgID})
		} else {
			ack := sendAckJSON{ClientMsgID: r.msg.ClientMsgID, MsgID: strconv.FormatInt(r.res.ID, 10), ConversationID: r.msg.ConversationID,
				Seq: r.res.Seq, CreatedAtMS: r.res.CreatedAt.UnixMilli()}
			if r.res.Duplicate && r.res.ID != r.msg.ID {
				if orig, err := s.msgs.MessageByID(ctx, r.res.ID); err == nil {
					ack.ConversationID = orig.ConversationID
				}
			}
			body, err = sonic.Marshal(ack)
		}
		if err != nil {
			return err
		}
		pm := pushmsg.Msg{Type: pushmsg.Keys, Operation: protocol.OpSendMsgReply, Seq: r.ackSeq, Server: r.ackServer, Keys: []string{r.key}, Body: body}
		out = append(out, bus.Message{Topic: bus.TopicPush, Key: r.ackServer, Value: pm.Marshal()})
	}
	if len(out) == 0 {
		return nil
	}
	if err := s.bus.Publish(ctx, out...); err != nil {
		return fmt.Errorf("logic: publish SendAcks: %w", err)
	}
	return nil
}

package logic

import (
	"context"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// Ack kinds of Op 20.
const (
	ackDelivered = "delivered"
	ackRead      = "read"
)

// ackReq is the AckReq body of Op 20.
type ackReq struct {
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	Kind           string `json:"kind"`
}

// ackJSON is the Op 21 body of a delivered ack.
type ackJSON struct {
	Code int `json:"code"`
}

// readJSON is the Op 21 body of a read ack and the answer of POST
// /api/v1/conversations/{id}/read: the reader's cursor after it.
type readJSON struct {
	Code    int   `json:"code"`
	ReadSeq int64 `json:"read_seq"`
	Unread  int64 `json:"unread"`
	MaxSeq  int64 `json:"max_seq"`
}

// markRead moves user's read cursor of convID to seq and, when it moved,
// sends the read receipt: to the peer's devices in a one-to-one chat and
// to the reader's other devices (not key) in both kinds, in order behind
// the message events already queued for fan-out.
func (s *Service) markRead(ctx context.Context, user int64, key, convID string, seq int64) (store.ReadState, *codeError) {
	if seq < 0 {
		return store.ReadState{}, refuse(protocol.CodeBadRequest, "seq must not be negative")
	}
	kind, a, b, cerr := s.participant(ctx, user, convID)
	if cerr != nil {
		return store.ReadState{}, cerr
	}
	st, err := s.msgs.MarkRead(ctx, user, convID, seq)
	if err != nil {
		return store.ReadState{}, s.storeRefusal("conversation", err)
	}
	if s.unread != nil {
		uctx, cancel := afterCommit(ctx)
		s.unreadRead(uctx, user, convID, st)
		cancel()
	}
	if st.Advanced {
		users := []int64{user}
		if kind == store.ConversationPair {
			users = []int64{a, b}
		}
		ev := readEvent{Type: evRead, ConversationID: convID, UserID: user, Seq: st.ReadSeq}
		// Through the ordered fan-out queue: a receipt never overtakes the
		// event of a message it covers, which may still be in fan-out.
		s.commit.ordered(func() {
			ctx, cancel := context.WithTimeout(context.Background(), sideEffectTimeout)
			defer cancel()
			s.emitExcept(ctx, evRead, users, user, key, ev)
		})
	}
	return st, nil
}

// opAck handles Op 20.
func (s *Service) opAck(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	var r ackReq
	cerr := decodeBody(req.Packet.Body, &r)
	var out any = ackJSON{}
	if cerr == nil {
		switch r.Kind {
		case ackRead:
			var st store.ReadState
			if st, cerr = s.markRead(ctx, req.UserID, req.Key, r.ConversationID, r.Seq); cerr == nil {
				out = readJSON{ReadSeq: st.ReadSeq, Unread: st.Unread, MaxSeq: st.MaxSeq}
			}
		case ackDelivered:
			cerr = s.markDelivered(ctx, req.UserID, req.Key, r.ConversationID, r.Seq)
		default:
			cerr = refuse(protocol.CodeBadRequest, `kind must be "delivered" or "read"`)
		}
	}
	return replyPacket(req, protocol.OpAckReply, out, cerr)
}

// markDelivered moves the delivered cursor of one device.
func (s *Service) markDelivered(ctx context.Context, user int64, key, convID string, seq int64) *codeError {
	if seq < 0 {
		return refuse(protocol.CodeBadRequest, "seq must not be negative")
	}
	if key == "" || len(key) > store.MaxDeviceKeyLen {
		return refuse(protocol.CodeBadRequest, "no device key")
	}
	if _, _, _, cerr := s.participant(ctx, user, convID); cerr != nil {
		return cerr
	}
	if _, err := s.msgs.MarkDelivered(ctx, user, key, convID, seq); err != nil {
		return s.storeRefusal("conversation", err)
	}
	return nil
}

package logic

import (
	"context"
	"strings"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// typingReq is the Op 23 body.
type typingReq struct {
	ConversationID string `json:"conversation_id"`
}

// opTyping handles Op 23: a typing event to the other participants'
// online devices, at most one per TypingInterval per user and
// conversation. Nothing is stored and nothing is answered: a malformed,
// unauthorized or excess packet is dropped (counted).
func (s *Service) opTyping(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	var r typingReq
	if cerr := decodeBody(req.Packet.Body, &r); cerr != nil {
		typingDropped.Inc()
		return nil, nil
	}
	conv := strings.Clone(r.ConversationID) // kept by the limiter; the body is reused
	if _, _, _, err := store.ParseConversationID(conv); err != nil {
		typingDropped.Inc()
		return nil, nil
	}
	if !s.typing.allow(req.UserID, conv, s.now()) {
		typingDropped.Inc()
		return nil, nil
	}
	kind, a, b, cerr := s.participant(ctx, req.UserID, conv)
	if cerr != nil {
		typingDropped.Inc()
		return nil, nil
	}
	others := []int64{a, b}
	if kind == store.ConversationPair {
		peer := a + b - req.UserID
		if blocked, err := s.checker.IsBlocked(ctx, peer, req.UserID); err != nil || blocked {
			typingDropped.Inc()
			return nil, nil
		}
	}
	if kind == store.ConversationGroup {
		members, err := s.groupMembers(ctx, a)
		if err != nil {
			typingDropped.Inc()
			return nil, nil
		}
		others = members
	}
	others = removeID(others, req.UserID)
	s.emitExcept(ctx, evTyping, others, 0, "", typingEvent{Type: evTyping, ConversationID: conv, UserID: req.UserID})
	return nil, nil
}

// removeID returns ids without id (a new slice).
func removeID(ids []int64, id int64) []int64 {
	out := make([]int64, 0, len(ids))
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

package logic

import (
	"context"
	"errors"
	"strconv"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// recallJSON answers POST /api/v1/messages/{msg_id}/recall.
type recallJSON struct {
	MsgID          string `json:"msg_id"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	NoticeSeq      int64  `json:"notice_seq"`
}

// recallMessage recalls message msgID for actor: its sender within
// RecallWindow, or (in a group) an admin or the owner at any time. The
// message keeps its seq with status 1 and no content; a notice (type 100)
// gets the next seq; every participant's online devices get a recall
// event.
func (s *Service) recallMessage(ctx context.Context, actor int64, msgID string) (recallJSON, *codeError) {
	id, err := strconv.ParseInt(msgID, 10, 64)
	if err != nil || id <= 0 {
		return recallJSON{}, refuse(protocol.CodeNotFound, "no such message")
	}
	m, err := s.msgs.MessageByID(ctx, id)
	if err != nil {
		return recallJSON{}, s.storeRefusal("message", err)
	}
	kind, a, b, cerr := s.participant(ctx, actor, m.ConversationID)
	if cerr != nil {
		if cerr.code == protocol.CodeForbidden {
			cerr = refuse(protocol.CodeNotFound, "no such message") // do not reveal other users' messages
		}
		return recallJSON{}, cerr
	}
	switch {
	case m.Type >= store.SystemTypeMin:
		return recallJSON{}, refuse(protocol.CodeForbidden, "system messages cannot be recalled")
	case m.Status == store.StatusRecalled:
		return recallJSON{}, refuse(protocol.CodeConflict, "the message is already recalled")
	}
	allowed := actor == m.SenderID && s.now().Sub(m.CreatedAt) <= s.cfg.RecallWindow
	if !allowed && kind == store.ConversationGroup {
		ms, err := s.checker.Membership(ctx, a, actor)
		if err != nil {
			return recallJSON{}, s.lookupFailed("membership", err)
		}
		allowed = ms.IsMember && (ms.Role == store.RoleAdmin || ms.Role == store.RoleOwner)
	}
	if !allowed {
		if actor == m.SenderID {
			return recallJSON{}, refuse(protocol.CodeForbidden, "the recall window of "+s.cfg.RecallWindow.String()+" has passed")
		}
		return recallJSON{}, refuse(protocol.CodeForbidden, "only the sender or a group admin may recall a message")
	}
	participants := []int64{a, b}
	if kind == store.ConversationGroup {
		if participants, err = s.groupMembers(ctx, a); err != nil {
			return recallJSON{}, s.lookupFailed("members", err)
		}
	}
	notice := &store.Message{ID: s.ids.Next(), SenderID: actor, Type: store.TypeRecallNotice}
	if kind == store.ConversationPair || len(participants) <= s.cfg.LargeGroupThreshold {
		notice.IndexUsers = participants
	}
	recalled, res, err := s.msgs.Recall(ctx, id, notice)
	if errors.Is(err, store.ErrConflict) {
		return recallJSON{}, refuse(protocol.CodeConflict, "the message is already recalled")
	}
	if err != nil {
		return recallJSON{}, s.storeRefusal("message", err)
	}
	out := recallJSON{MsgID: msgID, ConversationID: recalled.ConversationID, Seq: recalled.Seq, NoticeSeq: res.Seq}
	ectx, cancel := afterCommit(ctx)
	defer cancel()
	if s.msgCache != nil {
		// The committer may not have written the recalled message into
		// the cache yet (it was committed, then read here, before its
		// batch's cache write): wait for that write, so that the drop
		// below is the last word and no page served after this answer
		// shows the message unrecalled.
		if err := s.commit.cacheBarrier(ectx); err != nil {
			s.log.Warn("recall: the message cache barrier timed out", "conversation", recalled.ConversationID, "err", err)
		}
		s.msgCache.Recalled(ectx, recalled.ConversationID)
	}
	// The recalled message stops counting as unread: rebuilt when next read.
	s.unreadInvalidate(ectx, participants...)
	ev := recallEvent{
		Type: evRecall, ConversationID: out.ConversationID, MsgID: out.MsgID, Seq: out.Seq, NoticeSeq: out.NoticeSeq, By: actor,
	}
	// After the message's own event, which may still be in fan-out.
	s.commit.ordered(func() {
		ctx, cancel := context.WithTimeout(context.Background(), sideEffectTimeout)
		defer cancel()
		s.emitExcept(ctx, evRecall, participants, 0, "", ev)
	})
	return out, nil
}

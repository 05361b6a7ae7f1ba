package logic

import (
	"context"

	"github.com/goimdev/goim/internal/store"
)

// MessageCache caches the recent messages of hot conversations in front of
// the store's page reads (internal/msgcache implements it, in-process and
// Redis). The committer tells it about every commit before acknowledging
// it, recall about every recall; history and Sync pages read through it.
// It never fails a write and answers a read from the store when it does
// not hold the page.
type MessageCache interface {
	// Messages answers a page exactly as store.Messages.Messages does.
	Messages(ctx context.Context, convID string, afterSeq, beforeSeq int64, limit int) ([]store.Message, bool, error)
	// Committed is told about the messages just stored by one commit, in
	// commit order (duplicates and refused messages left out).
	Committed(ctx context.Context, msgs []*store.Message)
	// Recalled is told that a message of convID was recalled.
	Recalled(ctx context.Context, convID string)
}

// pageMessages reads a page through the message cache when there is one.
func (s *Service) pageMessages(ctx context.Context, convID string, after, before int64, limit int) ([]store.Message, bool, error) {
	if s.msgCache != nil {
		return s.msgCache.Messages(ctx, convID, after, before, limit)
	}
	return s.msgs.Messages(ctx, convID, after, before, limit)
}

// cacheCommitted tells the message cache about the stored messages of a
// commit.
func (s *Service) cacheCommitted(stored []*commitReq) {
	if s.msgCache == nil || len(stored) == 0 {
		return
	}
	msgs := make([]*store.Message, len(stored))
	for i, r := range stored {
		msgs[i] = r.msg
	}
	s.msgCache.Committed(context.Background(), msgs)
}

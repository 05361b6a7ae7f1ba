package logic

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/unread"
	"github.com/goimdev/goim/protocol"
)

// The conversation list's paging, large-group entries and read counts.

// parseConvCursor parses the cursor of a conversation list page,
// "<updated_at_ms>:<conversation_id>" ("" is the start of the list).
func parseConvCursor(s string) (store.ConversationCursor, *codeError) {
	if s == "" {
		return store.ConversationCursor{}, nil
	}
	ms, conv, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || n < 0 {
		return store.ConversationCursor{}, refuse(protocol.CodeBadRequest, "bad cursor")
	}
	if _, _, _, err := store.ParseConversationID(conv); err != nil {
		return store.ConversationCursor{}, refuse(protocol.CodeBadRequest, "bad cursor")
	}
	return store.ConversationCursor{UpdatedAt: time.UnixMilli(n), ConversationID: conv}, nil
}

// convCursor is the cursor after entry c.
func convCursor(c *store.UserConversation) string {
	return strconv.FormatInt(c.UpdatedAt.UnixMilli(), 10) + ":" + c.ConversationID
}

// largeEntries remembers the (user, group) pairs ensureLargeGroupEntries
// handled: an entry made (for good) or a small group (checked again after
// smallRecheck, it may grow). Bounded: emptied when full.
type largeEntries struct {
	mu   sync.Mutex
	seen map[[2]int64]time.Time // zero: the entry exists
}

const (
	maxLargeEntries = 1 << 17
	smallRecheck    = time.Minute
)

func (l *largeEntries) has(user, group int64, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.seen[[2]int64{user, group}]
	return ok && (at.IsZero() || now.Sub(at) < smallRecheck)
}

// add records an entry made (at zero) or a small group checked at at.
func (l *largeEntries) add(user, group int64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil || len(l.seen) >= maxLargeEntries {
		l.seen = make(map[[2]int64]time.Time)
	}
	l.seen[[2]int64{user, group}] = at
}

// ensureLargeGroupEntries gives user an entry (read nothing, exact unread
// computed when read) in every group above LargeGroupThreshold it is a
// member of and that has messages: read diffusion writes no entry, so
// without this such a group would be missing from the list and from
// total_unread. An entry, once made, stays (MarkRead with seq 0 changes
// nothing on an existing entry).
func (s *Service) ensureLargeGroupEntries(ctx context.Context, user int64) error {
	ch, err := s.rel.UserGroupChanges(ctx, user, 0)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, ug := range ch.Items {
		if ug.Deleted || s.large.has(user, ug.GroupID, now) {
			continue
		}
		g, err := s.store.Group(ctx, ug.GroupID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if g.Dismissed || g.MemberCount <= s.cfg.LargeGroupThreshold {
			s.large.add(user, ug.GroupID, now) // its members get their entries on write
			continue
		}
		conv := store.GroupConversationID(ug.GroupID)
		if _, err := s.msgs.Conversation(ctx, conv); errors.Is(err, store.ErrNotFound) {
			continue // no message yet (a read, not MarkRead's write transaction)
		} else if err != nil {
			return err
		}
		st, err := s.msgs.MarkRead(ctx, user, conv, 0)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		s.unreadRead(ctx, user, conv, st)
		s.large.add(user, ug.GroupID, time.Time{})
	}
	return nil
}

// readCount answers how many participants of convID other than the
// message's sender read the message at seq: current members (a
// participant of a one-to-one chat) whose read cursor is at or past it,
// who were members when it was sent (a later joiner's entry starts past
// the history it never read).
func (s *Service) readCount(ctx context.Context, convID string, seq int64) (int, *codeError) {
	kind, a, b, err := store.ParseConversationID(convID)
	if err != nil {
		return 0, refuse(protocol.CodeBadRequest, "bad conversation_id")
	}
	page, _, err := s.pageMessages(ctx, convID, seq-1, 0, 1)
	if err != nil {
		return 0, s.storeRefusal("message", err)
	}
	if seq <= 0 || len(page) == 0 || page[0].Seq != seq {
		return 0, refuse(protocol.CodeNotFound, "no such message")
	}
	msg := &page[0]
	readers, err := s.msgs.Readers(ctx, convID, seq)
	if err != nil {
		return 0, s.storeRefusal("conversation", err)
	}
	if len(readers) == 0 {
		return 0, nil
	}
	eligible := map[int64]bool{a: true, b: true}
	if kind == store.ConversationGroup {
		ch, err := s.rel.MemberChanges(ctx, a, 0)
		if err != nil {
			return 0, s.lookupFailed("members", err)
		}
		eligible = make(map[int64]bool, len(ch.Items))
		for _, m := range ch.Items {
			if !m.Deleted && (m.JoinedAt.IsZero() || !m.JoinedAt.After(msg.CreatedAt)) {
				eligible[m.UserID] = true
			}
		}
	}
	n := 0
	for _, u := range readers {
		if u != msg.SenderID && eligible[u] {
			n++
		}
	}
	return n, nil
}

// UnreadCounter mirrors unread counts outside the store (internal/unread's
// Redis implements it): incremented on write, reset on read, dropped on
// bulk changes, rebuilt from the store when missing. Its write methods log
// their own failures (and drop what they could not update).
type UnreadCounter interface {
	// Counts returns user's total unread over unmuted conversations and
	// the counts of convs.
	Counts(ctx context.Context, user int64, convs []string) (int64, map[string]int64, error)
	// Committed accounts stored messages, in commit order.
	Committed(ctx context.Context, entries []unread.Entry) error
	// Read sets user's count of conv, exact at maxSeq.
	Read(ctx context.Context, user int64, conv string, unread, maxSeq int64) error
	// Invalidate drops users' counters.
	Invalidate(ctx context.Context, users ...int64) error
}

var _ UnreadCounter = (*unread.Redis)(nil)

// unreadWriteTimeout bounds the mirror's update in a commit (its failure
// drops the counters concerned; the commit is not failed).
const unreadWriteTimeout = 500 * time.Millisecond

// unreadCounts returns user's total unread and sets the unread counts of
// the page's entries cs: from the mirror when there is one (the store's
// otherwise, and when the mirror fails).
func (s *Service) unreadCounts(ctx context.Context, user int64, cs []store.UserConversation) (int64, error) {
	if s.unread != nil {
		ids := make([]string, len(cs))
		for i := range cs {
			ids[i] = cs[i].ConversationID
		}
		total, counts, err := s.unread.Counts(ctx, user, ids)
		if err == nil {
			for i := range cs {
				cs[i].Unread = counts[cs[i].ConversationID]
			}
			return total, nil
		}
		if ctx.Err() == nil {
			s.log.Warn("unread counters unavailable: the store counts", "user", user, "err", err)
		}
	}
	return s.msgs.TotalUnread(ctx, user)
}

// countCommitted tells the unread mirror about the stored messages of a
// commit.
func (s *Service) countCommitted(reqs []*commitReq) {
	if s.unread == nil || len(reqs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), unreadWriteTimeout)
	defer cancel()
	entries := make([]unread.Entry, len(reqs))
	for i, r := range reqs {
		m := r.msg
		entries[i] = unread.Entry{ConversationID: m.ConversationID, Seq: m.Seq, SenderID: m.SenderID,
			Counts: m.Type < store.SystemTypeMin && m.Status == store.StatusNormal, Users: r.recipients}
	}
	_ = s.unread.Committed(ctx, entries)
}

// unreadRead tells the unread mirror about a read.
func (s *Service) unreadRead(ctx context.Context, user int64, conv string, st store.ReadState) {
	if s.unread != nil {
		_ = s.unread.Read(ctx, user, conv, st.Unread, st.MaxSeq)
	}
}

// unreadInvalidate drops users' mirrored counters.
func (s *Service) unreadInvalidate(ctx context.Context, users ...int64) {
	if s.unread != nil {
		_ = s.unread.Invalidate(ctx, users...)
	}
}

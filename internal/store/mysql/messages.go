package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/internal/msgbatch"
)

var _ store.Messages = (*Store)(nil)

const messageCols = "id, conversation_id, seq, sender_id, receiver_id, group_id, msg_type, content, client_msg_id, mentions, status, created_at"

// maxRows bounds the rows of one multi-row statement.
const maxRows = 500

// month is a month table's suffix, YYYYMM, of t in UTC.
func month(t time.Time) int {
	t = t.UTC()
	return t.Year()*100 + int(t.Month())
}

func monthTable(m int) string { return "message_" + strconv.Itoa(m) }

// monthTables remembers the month tables known to exist.
type monthTables struct {
	mu   sync.Mutex
	have map[int]bool
}

// ensureMonths creates the month tables of months that are not known to
// exist. DDL commits implicitly in MySQL, so this runs before the
// transaction that writes into them.
func (s *Store) ensureMonths(ctx context.Context, months ...int) error {
	s.months.mu.Lock()
	defer s.months.mu.Unlock()
	if s.months.have == nil {
		s.months.have = make(map[int]bool)
	}
	for _, m := range months {
		if s.months.have[m] {
			continue
		}
		if _, err := s.db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+monthTable(m)+" LIKE message_template"); err != nil {
			return fmt.Errorf("mysql: create month table %d: %w", m, err)
		}
		s.months.have[m] = true
	}
	return nil
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func scanMessage(r rowScanner) (store.Message, error) {
	var m store.Message
	var cmid sql.NullString
	var mentions string
	if err := r.Scan(&m.ID, &m.ConversationID, &m.Seq, &m.SenderID, &m.ReceiverID, &m.GroupID, &m.Type,
		&m.Content, &cmid, &mentions, &m.Status, &m.CreatedAt); err != nil {
		return m, err
	}
	m.ClientMsgID = cmid.String
	if len(m.Content) == 0 {
		m.Content = nil
	}
	var err error
	m.Mentions, err = store.DecodeMentions(mentions)
	return m, err
}

func rowPlaceholders(cols, n int) string {
	row := "(?" + strings.Repeat(",?", cols-1) + ")"
	return row + strings.Repeat(","+row, n-1)
}

// AppendMessages implements store.Messages: one read-committed
// transaction for the batch; the conversation rows are locked in id order
// (no deadlock between batches), and a transaction that lost a race on an
// idempotency key (duplicate key) or a deadlock is re-run: its lookups
// then find the winner's message.
func (s *Store) AppendMessages(ctx context.Context, msgs []*store.Message) ([]store.AppendResult, error) {
	if len(msgs) > store.MaxAppendBatch {
		return nil, fmt.Errorf("%w: %d messages in one batch (max %d)", store.ErrInvalid, len(msgs), store.MaxAppendBatch)
	}
	p := msgbatch.New(msgs, time.Now())
	if err := s.ensureMonths(ctx, planMonths(p)...); err != nil {
		return nil, err
	}
	err := s.appendRetry(ctx, "append messages", p, nil)
	if err != nil {
		return nil, err
	}
	return p.Finish(), nil
}

// planMonths returns the months of the plan's valid messages.
func planMonths(p *msgbatch.Plan) []int {
	var ms []int
	for i, m := range p.Msgs {
		if p.Results[i].Err != nil {
			continue
		}
		t := m.CreatedAt
		if t.IsZero() {
			t = p.Now
		}
		if mo := month(t); !slices.Contains(ms, mo) {
			ms = append(ms, mo)
		}
	}
	return ms
}

// appendRetry runs before (if any) and the append of p in one
// transaction, re-run on deadlock or on a lost idempotency race.
func (s *Store) appendRetry(ctx context.Context, what string, p *msgbatch.Plan, before func(tx *sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		p.Reset()
		err := s.tryTx(ctx, func(tx *sql.Tx) error {
			if before != nil {
				if err := before(tx); err != nil {
					return err
				}
			}
			return s.appendTx(ctx, tx, p)
		})
		if err == nil {
			return nil
		}
		if (isRetryable(err) || isDuplicate(err)) && attempt < maxDeadlockRetries && ctx.Err() == nil {
			txRetries.Inc()
			continue
		}
		if isStoreErr(err) {
			return err
		}
		return fmt.Errorf("mysql: %s: %w", what, err)
	}
}

func (s *Store) appendTx(ctx context.Context, tx *sql.Tx, p *msgbatch.Plan) error {
	if err := lookupKeys(ctx, tx, p); err != nil {
		return err
	}
	convs := slices.Clone(p.Group())
	if len(convs) == 0 {
		return nil
	}
	// Lock order: conversations by id.
	slices.SortFunc(convs, func(a, b *msgbatch.Conv) int { return strings.Compare(a.ID, b.ID) })
	now := ms(p.Now)
	for part := range slices.Chunk(convs, maxRows) {
		args := make([]any, 0, 7*len(part))
		ids := make([]any, 0, len(part))
		for _, c := range part {
			at := time.UnixMilli(p.LastAt(c)).UTC()
			args = append(args, c.ID, int(c.Kind), len(c.Msgs), p.LastMsg(c), at, now, at)
			ids = append(ids, c.ID)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO conversation (id, kind, max_seq, last_msg_id, last_msg_at, created_at, updated_at) VALUES "+
			rowPlaceholders(7, len(part))+` ON DUPLICATE KEY UPDATE max_seq = max_seq + VALUES(max_seq),
			last_msg_id = VALUES(last_msg_id), last_msg_at = VALUES(last_msg_at), updated_at = VALUES(updated_at)`, args...); err != nil {
			return err
		}
		// Our own writes, under our locks.
		rows, err := tx.QueryContext(ctx, "SELECT id, max_seq FROM conversation WHERE id IN ("+
			placeholders(len(part))+")", ids...)
		if err != nil {
			return err
		}
		byID := make(map[string]*msgbatch.Conv, len(part))
		for _, c := range part {
			byID[c.ID] = c
		}
		got := 0
		for rows.Next() {
			var id string
			var maxSeq int64
			if err := rows.Scan(&id, &maxSeq); err != nil {
				rows.Close()
				return err
			}
			if c := byID[id]; c != nil {
				p.Assign(c, maxSeq-int64(len(c.Msgs)))
				got++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if got != len(part) {
			return fmt.Errorf("seq allocation read %d of %d conversations", got, len(part))
		}
	}
	return insertBatch(ctx, tx, p, convs, now)
}

// lookupKeys finds the batch's idempotency keys already stored.
func lookupKeys(ctx context.Context, tx *sql.Tx, p *msgbatch.Plan) error {
	for part := range slices.Chunk(p.Keyed, maxRows) {
		args := make([]any, 0, 2*len(part))
		at := make(map[msgbatch.Key]int, len(part))
		var q strings.Builder
		q.WriteString("SELECT sender_id, client_msg_id, id, seq, created_at FROM message_ref WHERE ")
		for k, i := range part {
			if k > 0 {
				q.WriteString(" OR ")
			}
			q.WriteString("(sender_id = ? AND client_msg_id = ?)")
			m := p.Msgs[i]
			args = append(args, m.SenderID, m.ClientMsgID)
			at[msgbatch.Key{Sender: m.SenderID, ClientMsgID: m.ClientMsgID}] = i
		}
		rows, err := tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var k msgbatch.Key
			var r store.AppendResult
			if err := rows.Scan(&k.Sender, &k.ClientMsgID, &r.ID, &r.Seq, &r.CreatedAt); err != nil {
				rows.Close()
				return err
			}
			r.CreatedAt = time.UnixMilli(r.CreatedAt.UnixMilli())
			if i, ok := at[k]; ok {
				p.Found(i, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

type convMonth struct {
	conv     string
	month    int
	min, max int64
}

func insertBatch(ctx context.Context, tx *sql.Tx, p *msgbatch.Plan, convs []*msgbatch.Conv, now time.Time) error {
	byMonth := map[int][]int{}
	var months []int
	var cms []convMonth
	for _, c := range convs {
		for _, i := range c.Msgs {
			r := p.Results[i]
			mo := month(r.CreatedAt)
			if _, ok := byMonth[mo]; !ok {
				months = append(months, mo)
			}
			byMonth[mo] = append(byMonth[mo], i)
			if n := len(cms); n > 0 && cms[n-1].conv == c.ID && cms[n-1].month == mo {
				cms[n-1].min, cms[n-1].max = min(cms[n-1].min, r.Seq), max(cms[n-1].max, r.Seq)
			} else {
				cms = append(cms, convMonth{c.ID, mo, r.Seq, r.Seq})
			}
		}
	}
	// The global idempotency key first: a lost race fails here, cheaply.
	var all []int
	for _, c := range convs {
		all = append(all, c.Msgs...)
	}
	for part := range slices.Chunk(all, maxRows) {
		args := make([]any, 0, 7*len(part))
		for _, i := range part {
			m, r := p.Msgs[i], p.Results[i]
			args = append(args, m.ID, m.SenderID, nullStr(m.ClientMsgID), m.ConversationID, r.Seq, month(r.CreatedAt), ms(r.CreatedAt))
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO message_ref (id, sender_id, client_msg_id, conversation_id, seq, month, created_at) VALUES "+
			rowPlaceholders(7, len(part)), args...); err != nil {
			return err
		}
	}
	for _, mo := range months {
		for part := range slices.Chunk(byMonth[mo], maxRows) {
			args := make([]any, 0, 12*len(part))
			for _, i := range part {
				m, r := p.Msgs[i], p.Results[i]
				args = append(args, m.ID, m.ConversationID, r.Seq, m.SenderID, m.ReceiverID, m.GroupID, m.Type,
					m.Content, nullStr(m.ClientMsgID), store.EncodeMentions(m.Mentions), store.StatusNormal, ms(r.CreatedAt))
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+monthTable(mo)+" ("+messageCols+") VALUES "+rowPlaceholders(12, len(part)), args...); err != nil {
				return err
			}
		}
	}
	for part := range slices.Chunk(cms, maxRows) {
		args := make([]any, 0, 4*len(part))
		for _, cm := range part {
			args = append(args, cm.conv, cm.month, cm.min, cm.max)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO conversation_month (conversation_id, month, min_seq, max_seq) VALUES "+
			rowPlaceholders(4, len(part))+" ON DUPLICATE KEY UPDATE min_seq = LEAST(min_seq, VALUES(min_seq)), max_seq = GREATEST(max_seq, VALUES(max_seq))",
			args...); err != nil {
			return err
		}
	}
	// The users' index, in (conversation, user) order.
	type row struct {
		conv string
		base int64
		d    msgbatch.UserDelta
	}
	var rows []row
	for _, c := range convs {
		for _, d := range p.Deltas(c) {
			rows = append(rows, row{c.ID, c.Base, d})
		}
	}
	for part := range slices.Chunk(rows, maxRows) {
		args := make([]any, 0, 6*len(part))
		for _, r := range part {
			args = append(args, r.d.User, r.conv, r.base, r.d.LastSeq, r.d.Unread, now)
		}
		// Assignments run left to right: unread reads the old last_seq.
		if _, err := tx.ExecContext(ctx, "INSERT INTO user_conversation (user_id, conversation_id, read_seq, last_seq, unread, updated_at) VALUES "+
			rowPlaceholders(6, len(part))+` ON DUPLICATE KEY UPDATE
			unread = IF(last_seq = VALUES(read_seq), unread + VALUES(unread), unread),
			last_seq = IF(last_seq = VALUES(read_seq), VALUES(last_seq), last_seq),
			updated_at = VALUES(updated_at)`, args...); err != nil {
			return err
		}
	}
	return nil
}

// monthRange is a month holding seqs min..max of a conversation.
type monthRange struct {
	month    int
	min, max int64
}

// convMonths returns the months holding convID's seqs in (after, before)
// (before 0: no upper bound), ascending.
func convMonths(ctx context.Context, q execer, convID string, after, before int64) ([]monthRange, error) {
	query := "SELECT month, min_seq, max_seq FROM conversation_month WHERE conversation_id = ? AND max_seq > ?"
	args := []any{convID, after}
	if before > 0 {
		query += " AND min_seq < ?"
		args = append(args, before)
	}
	rows, err := q.QueryContext(ctx, query+" ORDER BY month", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []monthRange
	for rows.Next() {
		var r monthRange
		if err := rows.Scan(&r.month, &r.min, &r.max); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Messages implements store.Messages. The months holding the range come
// from conversation_month; they are read in order (descending for a
// before page) until the page is full.
func (s *Store) Messages(ctx context.Context, convID string, afterSeq, beforeSeq int64, limit int) ([]store.Message, bool, error) {
	if err := store.ValidatePage(limit); err != nil {
		return nil, false, err
	}
	if afterSeq < 0 || beforeSeq < 0 {
		return nil, false, fmt.Errorf("%w: negative seq", store.ErrInvalid)
	}
	months, err := convMonths(ctx, s.db, convID, afterSeq, beforeSeq)
	if err != nil {
		return nil, false, fmt.Errorf("mysql: messages: %w", err)
	}
	// Months normally hold disjoint seq ranges in month order, but a
	// caller-given CreatedAt may interleave them: read the months in seq
	// order and stop once the page is full and no further month can hold
	// a seq that belongs in it.
	desc := beforeSeq > 0
	if desc {
		slices.SortFunc(months, func(a, b monthRange) int { return cmp.Compare(b.max, a.max) })
	} else {
		slices.SortFunc(months, func(a, b monthRange) int { return cmp.Compare(a.min, b.min) })
	}
	msgs := make([]store.Message, 0, min(limit+1, 64))
	for _, mo := range months {
		if len(msgs) > limit {
			slices.SortFunc(msgs, func(a, b store.Message) int { return cmp.Compare(a.Seq, b.Seq) })
			if desc {
				if mo.max < msgs[len(msgs)-1-limit].Seq {
					break
				}
			} else if mo.min > msgs[limit].Seq {
				break
			}
		}
		var q string
		args := []any{convID, afterSeq}
		if desc {
			q = "SELECT " + messageCols + " FROM " + monthTable(mo.month) + " WHERE conversation_id = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?"
			args = append(args, beforeSeq, limit+1)
		} else {
			q = "SELECT " + messageCols + " FROM " + monthTable(mo.month) + " WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
			args = append(args, limit+1)
		}
		rows, err := s.db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, false, fmt.Errorf("mysql: messages: %w", err)
		}
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				rows.Close()
				return nil, false, fmt.Errorf("mysql: messages: %w", err)
			}
			msgs = append(msgs, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, fmt.Errorf("mysql: messages: %w", err)
		}
	}
	slices.SortFunc(msgs, func(a, b store.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	more := len(msgs) > limit
	if more {
		if desc {
			msgs = msgs[len(msgs)-limit:]
		} else {
			msgs = msgs[:limit]
		}
	}
	return msgs, more, nil
}

// messageAt reads a message from its month table.
func messageAt(ctx context.Context, q execer, mo int, id int64, lock bool) (*store.Message, error) {
	query := "SELECT " + messageCols + " FROM " + monthTable(mo) + " WHERE id = ?"
	if lock {
		query += " FOR UPDATE"
	}
	m, err := scanMessage(q.QueryRowContext(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: message %d", store.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// refWhere finds a message's id and month in message_ref.
func refWhere(ctx context.Context, q execer, where string, args ...any) (id int64, mo int, err error) {
	err = q.QueryRowContext(ctx, "SELECT id, month FROM message_ref WHERE "+where, args...).Scan(&id, &mo)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("%w: message", store.ErrNotFound)
	}
	return id, mo, err
}

func (s *Store) messageWhere(ctx context.Context, what, where string, args ...any) (*store.Message, error) {
	id, mo, err := refWhere(ctx, s.db, where, args...)
	if err == nil {
		var m *store.Message
		if m, err = messageAt(ctx, s.db, mo, id, false); err == nil {
			return m, nil
		}
	}
	if isStoreErr(err) {
		return nil, err
	}
	return nil, fmt.Errorf("mysql: %s: %w", what, err)
}

// MessageByID implements store.Messages.
func (s *Store) MessageByID(ctx context.Context, id int64) (*store.Message, error) {
	return s.messageWhere(ctx, "message by id", "id = ?", id)
}

// MessageByClientID implements store.Messages.
func (s *Store) MessageByClientID(ctx context.Context, sender int64, clientMsgID string) (*store.Message, error) {
	if clientMsgID == "" {
		return nil, fmt.Errorf("%w: message", store.ErrNotFound)
	}
	return s.messageWhere(ctx, "message by client id", "sender_id = ? AND client_msg_id = ?", sender, clientMsgID)
}

// Conversation implements store.Messages.
func (s *Store) Conversation(ctx context.Context, convID string) (*store.Conversation, error) {
	var c store.Conversation
	err := s.db.QueryRowContext(ctx, "SELECT id, kind, max_seq, last_msg_id, created_at, last_msg_at FROM conversation WHERE id = ?", convID).
		Scan(&c.ID, &c.Kind, &c.MaxSeq, &c.LastMsgID, &c.CreatedAt, &c.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: conversation %.64q", store.ErrNotFound, convID)
	}
	if err != nil {
		return nil, fmt.Errorf("mysql: conversation: %w", err)
	}
	return &c, nil
}

// countUnread counts convID's messages in (from, to] counting as unread
// for user, across the months holding them.
func countUnread(ctx context.Context, q execer, convID string, user, from, to int64) (int64, error) {
	if to <= from {
		return 0, nil
	}
	months, err := convMonths(ctx, q, convID, from, to+1)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, mo := range months {
		var n int64
		err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+monthTable(mo.month)+
			" WHERE conversation_id = ? AND seq > ? AND seq <= ? AND sender_id <> ? AND msg_type < ? AND status = 0",
			convID, from, to, user, store.SystemTypeMin).Scan(&n)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// userConversations reads userID's entries with exact unread counts;
// LastMessage holds only the last message's id and time. limit <= 0: all.
func userConversations(ctx context.Context, q execer, userID int64, limit int, unmutedOnly bool, after store.ConversationCursor) ([]store.UserConversation, error) {
	query := `SELECT uc.conversation_id, c.max_seq, uc.read_seq, uc.delivered_seq, uc.unread, uc.last_seq, uc.muted, uc.updated_at,
		c.last_msg_id, c.last_msg_at
		FROM user_conversation AS uc JOIN conversation AS c ON c.id = uc.conversation_id WHERE uc.user_id = ?`
	args := []any{userID}
	if unmutedOnly {
		query += " AND uc.muted = 0"
	}
	if !after.IsZero() {
		at := after.UpdatedAt.Truncate(time.Millisecond)
		query += " AND (c.last_msg_at < ? OR (c.last_msg_at = ? AND c.id > ?))"
		args = append(args, at, at, after.ConversationID)
	}
	query += " ORDER BY c.last_msg_at DESC, c.id"
	if limit > 0 {
		query += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	var out []store.UserConversation
	var lastSeqs []int64
	for rows.Next() {
		var c store.UserConversation
		var lastSeq int64
		var last store.Message
		if err := rows.Scan(&c.ConversationID, &c.MaxSeq, &c.ReadSeq, &c.DeliveredSeq, &c.Unread, &lastSeq, &c.Muted, &c.UpdatedAt,
			&last.ID, &last.CreatedAt); err != nil {
			rows.Close()
			return nil, err
		}
		c.UpdatedAt = last.CreatedAt
		c.LastMessage = &last
		out = append(out, c)
		lastSeqs = append(lastSeqs, lastSeq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		c := &out[i]
		n, err := countUnread(ctx, q, c.ConversationID, userID, max(lastSeqs[i], c.ReadSeq), c.MaxSeq)
		if err != nil {
			return nil, err
		}
		c.Unread += n
	}
	return out, nil
}

// Conversations implements store.Messages.
func (s *Store) Conversations(ctx context.Context, userID int64, limit int) ([]store.UserConversation, error) {
	return s.ConversationsAfter(ctx, userID, store.ConversationCursor{}, limit)
}

// ConversationsAfter implements store.Messages.
func (s *Store) ConversationsAfter(ctx context.Context, userID int64, after store.ConversationCursor, limit int) ([]store.UserConversation, error) {
	if err := store.ValidatePage(limit); err != nil {
		return nil, err
	}
	out, err := userConversations(ctx, s.db, userID, limit, false, after)
	if err != nil {
		return nil, fmt.Errorf("mysql: conversations: %w", err)
	}
	byMonth := map[int][]int64{}
	for _, c := range out {
		mo := month(c.LastMessage.CreatedAt)
		byMonth[mo] = append(byMonth[mo], c.LastMessage.ID)
	}
	last := make(map[int64]*store.Message, len(out))
	for mo, ids := range byMonth {
		for part := range slices.Chunk(ids, maxRows) {
			args := make([]any, len(part))
			for i, id := range part {
				args[i] = id
			}
			rows, err := s.db.QueryContext(ctx, "SELECT "+messageCols+" FROM "+monthTable(mo)+" WHERE id IN ("+
				placeholders(len(part))+")", args...)
			if err != nil {
				return nil, fmt.Errorf("mysql: conversations: %w", err)
			}
			for rows.Next() {
				m, err := scanMessage(rows)
				if err != nil {
					rows.Close()
					return nil, fmt.Errorf("mysql: conversations: %w", err)
				}
				last[m.ID] = &m
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("mysql: conversations: %w", err)
			}
		}
	}
	for i := range out {
		out[i].LastMessage = last[out[i].LastMessage.ID]
	}
	return out, nil
}

// TotalUnread implements store.Messages.
func (s *Store) TotalUnread(ctx context.Context, userID int64) (int64, error) {
	cs, err := userConversations(ctx, s.db, userID, 0, true, store.ConversationCursor{})
	if err != nil {
		return 0, fmt.Errorf("mysql: total unread: %w", err)
	}
	var total int64
	for _, c := range cs {
		total += c.Unread
	}
	return total, nil
}

func maxSeq(ctx context.Context, q execer, convID string) (int64, error) {
	var n int64
	err := q.QueryRowContext(ctx, "SELECT max_seq FROM conversation WHERE id = ?", convID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: conversation %.64q", store.ErrNotFound, convID)
	}
	return n, err
}

// MarkRead implements store.Messages. The user's row is locked first and
// the conversation's max_seq read after (without a lock): an append that
// already raised max_seq either committed (and is seen) or waits for the
// user row and then adds its messages on top of the entry written here.
func (s *Store) MarkRead(ctx context.Context, userID int64, convID string, seq int64) (store.ReadState, error) {
	if seq < 0 || userID <= 0 {
		return store.ReadState{}, fmt.Errorf("%w: mark read user %d seq %d", store.ErrInvalid, userID, seq)
	}
	var st store.ReadState
	err := s.inTx(ctx, "mark read", func(tx *sql.Tx) error {
		st = store.ReadState{}
		var readSeq, lastSeq, unread int64
		err := tx.QueryRowContext(ctx, "SELECT read_seq, last_seq, unread FROM user_conversation WHERE user_id = ? AND conversation_id = ? FOR UPDATE",
			userID, convID).Scan(&readSeq, &lastSeq, &unread)
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		top, err := maxSeq(ctx, tx, convID)
		if err != nil {
			return err
		}
		to := min(seq, top)
		st.MaxSeq = top
		if exists && to <= readSeq {
			n, err := countUnread(ctx, tx, convID, userID, max(lastSeq, readSeq), top)
			st.ReadSeq, st.Unread = readSeq, unread+n
			return err
		}
		unread = 0
		if to < top {
			if unread, err = countUnread(ctx, tx, convID, userID, to, top); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO user_conversation (user_id, conversation_id, read_seq, last_seq, unread, updated_at)
			VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE
			unread = IF(VALUES(read_seq) >= read_seq, VALUES(unread), unread),
			last_seq = IF(VALUES(read_seq) >= read_seq, VALUES(last_seq), last_seq),
			read_seq = GREATEST(read_seq, VALUES(read_seq)), updated_at = VALUES(updated_at)`,
			userID, convID, to, top, unread, now())
		st.ReadSeq, st.Unread, st.Advanced = to, unread, exists || to > 0
		return err
	})
	return st, err
}

// MarkDelivered implements store.Messages.
func (s *Store) MarkDelivered(ctx context.Context, userID int64, deviceKey, convID string, seq int64) (bool, error) {
	if seq < 0 || userID <= 0 || deviceKey == "" || len(deviceKey) > store.MaxDeviceKeyLen {
		return false, fmt.Errorf("%w: mark delivered user %d seq %d", store.ErrInvalid, userID, seq)
	}
	var advanced bool
	err := s.inTx(ctx, "mark delivered", func(tx *sql.Tx) error {
		advanced = false
		top, err := maxSeq(ctx, tx, convID)
		if err != nil {
			return err
		}
		seq := min(seq, top)
		if seq == 0 {
			return nil
		}
		// RowsAffected: 1 inserted, 2 updated, 0 unchanged.
		res, err := tx.ExecContext(ctx, `INSERT INTO delivery_cursor (user_id, conversation_id, device_key, delivered_seq, updated_at)
			VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE
			updated_at = IF(VALUES(delivered_seq) > delivered_seq, VALUES(updated_at), updated_at),
			delivered_seq = GREATEST(delivered_seq, VALUES(delivered_seq))`,
			userID, convID, deviceKey, seq, now())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		advanced = true
		_, err = tx.ExecContext(ctx, `UPDATE user_conversation SET delivered_seq = ?
			WHERE user_id = ? AND conversation_id = ? AND delivered_seq < ?`, seq, userID, convID, seq)
		return err
	})
	return advanced, err
}

// SetConversationMuted implements store.Messages.
func (s *Store) SetConversationMuted(ctx context.Context, userID int64, convID string, muted bool) error {
	if userID <= 0 {
		return fmt.Errorf("%w: user %d", store.ErrInvalid, userID)
	}
	return s.inTx(ctx, "set conversation muted", func(tx *sql.Tx) error {
		if _, err := maxSeq(ctx, tx, convID); err != nil {
			return err
		}
		// A new entry has read nothing (muting is not reading: it must not
		// count in read counts); its unread count is computed when read.
		_, err := tx.ExecContext(ctx, `INSERT INTO user_conversation (user_id, conversation_id, read_seq, last_seq, unread, muted, updated_at)
			VALUES (?, ?, 0, 0, 0, ?, ?) ON DUPLICATE KEY UPDATE muted = VALUES(muted)`,
			userID, convID, muted, now())
		return err
	})
}

// ReadCount implements store.Messages.
func (s *Store) ReadCount(ctx context.Context, convID string, seq int64) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM user_conversation WHERE conversation_id = ? AND read_seq >= ?",
		convID, seq).Scan(&n); err != nil {
		return 0, fmt.Errorf("mysql: read count: %w", err)
	}
	return n, nil
}

// Readers implements store.Messages.
func (s *Store) Readers(ctx context.Context, convID string, seq int64) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT user_id FROM user_conversation WHERE conversation_id = ? AND read_seq >= ?", convID, seq)
	if err != nil {
		return nil, fmt.Errorf("mysql: readers: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var u int64
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("mysql: readers: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysql: readers: %w", err)
	}
	return out, nil
}

// Recall implements store.Messages.
func (s *Store) Recall(ctx context.Context, msgID int64, notice *store.Message) (*store.Message, store.AppendResult, error) {
	if notice == nil || notice.SenderID <= 0 {
		return nil, store.AppendResult{}, fmt.Errorf("%w: recall notice", store.ErrInvalid)
	}
	nowT := time.Now()
	noticeAt := notice.CreatedAt
	if noticeAt.IsZero() {
		noticeAt = nowT
	}
	if err := s.ensureMonths(ctx, month(noticeAt)); err != nil {
		return nil, store.AppendResult{}, err
	}
	// The notice's fields come from the recalled message, read first
	// (they never change); the transaction re-reads it under a lock.
	orig, err := s.MessageByID(ctx, msgID)
	if err != nil {
		return nil, store.AppendResult{}, err
	}
	prepareNotice(notice, orig)
	p := msgbatch.New([]*store.Message{notice}, nowT)
	if err := p.Results[0].Err; err != nil {
		return nil, store.AppendResult{}, err
	}
	var recalled *store.Message
	err = s.appendRetry(ctx, "recall", p, func(tx *sql.Tx) error {
		_, mo, err := refWhere(ctx, tx, "id = ?", msgID)
		if err != nil {
			return err
		}
		m, err := messageAt(ctx, tx, mo, msgID, true)
		if err != nil {
			return err
		}
		if m.Status == store.StatusRecalled {
			return fmt.Errorf("%w: message %d already recalled", store.ErrConflict, msgID)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+monthTable(mo)+" SET status = ?, content = '' WHERE id = ?", store.StatusRecalled, msgID); err != nil {
			return err
		}
		if m.Type < store.SystemTypeMin {
			if _, err := tx.ExecContext(ctx, `UPDATE user_conversation SET unread = unread - 1
				WHERE conversation_id = ? AND read_seq < ? AND last_seq >= ? AND user_id <> ? AND unread > 0`,
				m.ConversationID, m.Seq, m.Seq, m.SenderID); err != nil {
				return err
			}
		}
		m.Status, m.Content = store.StatusRecalled, nil
		recalled = m
		return nil
	})
	if err != nil {
		return nil, store.AppendResult{}, err
	}
	return recalled, p.Finish()[0], nil
}

func prepareNotice(notice, m *store.Message) {
	notice.ConversationID = m.ConversationID
	notice.ReceiverID = m.ReceiverID
	notice.GroupID = m.GroupID
	if notice.Type == 0 {
		notice.Type = store.TypeRecallNotice
	}
	notice.Content = store.RecallNoticeContent(m.ID, m.Seq)
}

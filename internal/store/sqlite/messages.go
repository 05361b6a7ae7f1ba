package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/internal/msgbatch"
)

var _ store.Messages = (*Store)(nil)

const messageCols = "id, conversation_id, seq, sender_id, receiver_id, group_id, msg_type, content, client_msg_id, mentions, status, created_at"

// maxChunk is the most rows of one multi-row statement; batches are cut
// into power-of-two chunks so that at most log2(maxChunk)+1 statements of
// each kind are ever prepared.
const maxChunk = 256

// stmtCache holds the writer's prepared multi-row statements by SQL text.
// They are prepared at Open: the writer pool has one connection, so a
// statement cannot be prepared on it while a transaction holds it.
type stmtCache struct {
	m map[string]*sql.Stmt // read-only after Open
}

func (c *stmtCache) prepare(ctx context.Context, db *sql.DB, qs []string) error {
	if c.m == nil {
		c.m = make(map[string]*sql.Stmt, len(qs))
	}
	for _, q := range qs {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		c.m[q] = st
	}
	return nil
}

func (c *stmtCache) close() error {
	var errs []error
	for _, st := range c.m {
		errs = append(errs, st.Close())
	}
	c.m = nil
	return errors.Join(errs...)
}

// Multi-row statements, by number of rows.
func seqUpsertSQL(n int) string {
	return rowsSQL("INSERT INTO conversations (id, kind, max_seq, last_msg_id, created_at, updated_at) VALUES ",
		6, n, ` ON CONFLICT (id) DO UPDATE SET max_seq = max_seq + excluded.max_seq,
			last_msg_id = excluded.last_msg_id, updated_at = excluded.updated_at RETURNING id, max_seq`)
}

func keyLookupSQL(n int) string {
	return rowsSQL("SELECT m.sender_id, m.client_msg_id, m.id, m.seq, m.created_at FROM (VALUES ",
		2, n, ") AS k JOIN messages AS m ON m.sender_id = k.column1 AND m.client_msg_id = k.column2")
}

func insertMessagesSQL(n int) string {
	return rowsSQL("INSERT INTO messages ("+messageCols+") VALUES ", 12, n, "")
}

func indexUpsertSQL(n int) string {
	return rowsSQL("INSERT INTO user_conversations (user_id, conversation_id, read_seq, last_seq, unread, updated_at) VALUES ",
		6, n, ` ON CONFLICT (user_id, conversation_id) DO UPDATE SET
			unread = CASE WHEN last_seq = excluded.read_seq THEN unread + excluded.unread ELSE unread END,
			last_seq = CASE WHEN last_seq = excluded.read_seq THEN excluded.last_seq ELSE last_seq END,
			updated_at = excluded.updated_at`)
}

// messageStmts lists every multi-row statement for every chunk size.
func messageStmts() []string {
	var qs []string
	for n := 1; n <= maxChunk; n *= 2 {
		qs = append(qs, seqUpsertSQL(n), keyLookupSQL(n), insertMessagesSQL(n), indexUpsertSQL(n))
	}
	return qs
}

// chunks cuts n rows into power-of-two chunk sizes, largest first.
func chunks(n int) []int {
	var out []int
	for n > 0 {
		c := min(maxChunk, 1<<(bits.Len(uint(n))-1))
		out = append(out, c)
		n -= c
	}
	return out
}

func rowsSQL(prefix string, cols, n int, suffix string) string {
	row := "(?" + strings.Repeat(",?", cols-1) + ")"
	var b strings.Builder
	b.Grow(len(prefix) + n*(len(row)+1) + len(suffix))
	b.WriteString(prefix)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	b.WriteString(suffix)
	return b.String()
}

// stmt returns the prepared statement q for tx (prepared in the
// transaction if it is not one of messageStmts).
func (s *Store) stmt(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	if st := s.stmts.m[q]; st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	return tx.PrepareContext(ctx, q)
}

func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func scanMessage(r rowScanner) (store.Message, error) {
	var m store.Message
	var cmid sql.NullString
	var mentions string
	var created int64
	if err := r.Scan(&m.ID, &m.ConversationID, &m.Seq, &m.SenderID, &m.ReceiverID, &m.GroupID, &m.Type,
		&m.Content, &cmid, &mentions, &m.Status, &created); err != nil {
		return m, err
	}
	m.ClientMsgID = cmid.String
	m.CreatedAt = time.UnixMilli(created)
	var err error
	m.Mentions, err = store.DecodeMentions(mentions)
	return m, err
}

// AppendMessages implements store.Messages: one BEGIN IMMEDIATE on the
// one writer connection for the whole batch.
func (s *Store) AppendMessages(ctx context.Context, msgs []*store.Message) ([]store.AppendResult, error) {
	if len(msgs) > store.MaxAppendBatch {
		return nil, fmt.Errorf("%w: %d messages in one batch (max %d)", store.ErrInvalid, len(msgs), store.MaxAppendBatch)
	}
	p := msgbatch.New(msgs, s.clock())
	if len(p.Keyed) == 0 && allRefused(p) {
		return p.Finish(), nil
	}
	err := s.write(ctx, "append messages", func(tx *sql.Tx) error { return s.appendTx(ctx, tx, p) })
	if err != nil {
		return nil, err
	}
	if s.ckpt != nil {
		s.ckpt.appended(len(msgs))
	}
	return p.Finish(), nil
}

func allRefused(p *msgbatch.Plan) bool {
	for _, r := range p.Results {
		if r.Err == nil {
			return false
		}
	}
	return true
}

func (s *Store) appendTx(ctx context.Context, tx *sql.Tx, p *msgbatch.Plan) error {
	if err := s.lookupKeys(ctx, tx, p); err != nil {
		return err
	}
	convs := p.Group()
	if len(convs) == 0 {
		return nil
	}
	now := p.Now.UnixMilli()
	// Seqs: one upsert per conversation chunk, returning the new max_seq.
	for off := 0; off < len(convs); {
		n := chunks(len(convs) - off)[0]
		part := convs[off : off+n]
		st, err := s.stmt(ctx, tx, seqUpsertSQL(n))
		if err != nil {
			return err
		}
		args := make([]any, 0, 6*n)
		byID := make(map[string]*msgbatch.Conv, n)
		for _, c := range part {
			at := p.LastAt(c)
			args = append(args, c.ID, int(c.Kind), len(c.Msgs), p.LastMsg(c), at, at)
			byID[c.ID] = c
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		got := 0
		for rows.Next() {
			var id string
			var maxSeq int64
			if err := rows.Scan(&id, &maxSeq); err != nil {
				rows.Close()
				return err
			}
			c := byID[id]
			if c == nil {
				rows.Close()
				return fmt.Errorf("seq upsert returned unknown conversation %q", id)
			}
			p.Assign(c, maxSeq-int64(len(c.Msgs)))
			got++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("seq upsert returned %d rows for %d conversations", got, n)
		}
		off += n
	}
	if err := s.insertMessages(ctx, tx, p, convs); err != nil {
		return err
	}
	return s.updateIndex(ctx, tx, p, convs, now)
}

// lookupKeys finds the batch's idempotency keys already stored.
func (s *Store) lookupKeys(ctx context.Context, tx *sql.Tx, p *msgbatch.Plan) error {
	for off := 0; off < len(p.Keyed); {
		n := chunks(len(p.Keyed) - off)[0]
		part := p.Keyed[off : off+n]
		off += n
		st, err := s.stmt(ctx, tx, keyLookupSQL(n))
		if err != nil {
			return err
		}
		args := make([]any, 0, 2*n)
		at := make(map[msgbatch.Key]int, n)
		for _, i := range part {
			m := p.Msgs[i]
			args = append(args, m.SenderID, m.ClientMsgID)
			at[msgbatch.Key{Sender: m.SenderID, ClientMsgID: m.ClientMsgID}] = i
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var k msgbatch.Key
			var r store.AppendResult
			var created int64
			if err := rows.Scan(&k.Sender, &k.ClientMsgID, &r.ID, &r.Seq, &created); err != nil {
				rows.Close()
				return err
			}
			r.CreatedAt = time.UnixMilli(created)
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

func (s *Store) insertMessages(ctx context.Context, tx *sql.Tx, p *msgbatch.Plan, convs []*msgbatch.Conv) error {
	var idx []int
	for _, c := range convs {
		idx = append(idx, c.Msgs...)
	}
	for off := 0; off < len(idx); {
		n := chunks(len(idx) - off)[0]
		st, err := s.stmt(ctx, tx, insertMessagesSQL(n))
		if err != nil {
			return err
		}
		args := make([]any, 0, 12*n)
		for _, i := range idx[off : off+n] {
			m, r := p.Msgs[i], p.Results[i]
			args = append(args, m.ID, m.ConversationID, r.Seq, m.SenderID, m.ReceiverID, m.GroupID, m.Type,
				m.Content, nullString(m.ClientMsgID), store.EncodeMentions(m.Mentions), store.StatusNormal, r.CreatedAt.UnixMilli())
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			if isUniqueViolation(err) {
				// A msg_id reused by the caller (keys were looked up).
				return fmt.Errorf("%w: duplicate msg_id or seq: %w", store.ErrConflict, err)
			}
			return err
		}
		off += n
	}
	return nil
}

// updateIndex applies the users' index deltas. An entry that accounts for
// every message before the batch (last_seq = the batch's base) gets the
// batch's unread count and last seq; an entry lagging behind (read
// diffusion earlier) is left as it is, its tail being counted on read. A
// new entry starts at read_seq = base.
func (s *Store) updateIndex(ctx context.Context, tx *sql.Tx, p *msgbatch.Plan, convs []*msgbatch.Conv, now int64) error {
	var args []any
	rows := 0
	flush := func(n int) error {
		st, err := s.stmt(ctx, tx, indexUpsertSQL(n))
		if err != nil {
			return err
		}
		_, err = st.ExecContext(ctx, args[:6*n]...)
		args = append(args[:0], args[6*n:]...)
		rows -= n
		return err
	}
	for _, c := range convs {
		for _, d := range p.Deltas(c) {
			args = append(args, d.User, c.ID, c.Base, d.LastSeq, d.Unread, now)
			if rows++; rows == maxChunk {
				if err := flush(maxChunk); err != nil {
					return err
				}
			}
		}
	}
	for _, n := range chunks(rows) {
		if err := flush(n); err != nil {
			return err
		}
	}
	return nil
}

// Messages implements store.Messages.
func (s *Store) Messages(ctx context.Context, convID string, afterSeq, beforeSeq int64, limit int) ([]store.Message, bool, error) {
	if err := store.ValidatePage(limit); err != nil {
		return nil, false, err
	}
	if afterSeq < 0 || beforeSeq < 0 {
		return nil, false, fmt.Errorf("%w: negative seq", store.ErrInvalid)
	}
	var q string
	args := []any{convID, afterSeq}
	if beforeSeq > 0 {
		q = "SELECT " + messageCols + " FROM messages WHERE conversation_id = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?"
		args = append(args, beforeSeq, limit+1)
	} else {
		q = "SELECT " + messageCols + " FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
		args = append(args, limit+1)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, wrap("messages", err)
	}
	defer rows.Close()
	msgs := make([]store.Message, 0, min(limit+1, 64))
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, false, wrap("messages", err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, wrap("messages", err)
	}
	more := len(msgs) > limit
	if more {
		msgs = msgs[:limit]
	}
	if beforeSeq > 0 {
		for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
			msgs[i], msgs[j] = msgs[j], msgs[i]
		}
	}
	return msgs, more, nil
}

func (s *Store) messageWhere(ctx context.Context, q querier, what, where string, args ...any) (*store.Message, error) {
	m, err := scanMessage(q.QueryRowContext(ctx, "SELECT "+messageCols+" FROM messages WHERE "+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: message", store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap(what, err)
	}
	return &m, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// MessageByID implements store.Messages.
func (s *Store) MessageByID(ctx context.Context, id int64) (*store.Message, error) {
	return s.messageWhere(ctx, s.r, "message by id", "id = ?", id)
}

// MessageByClientID implements store.Messages.
func (s *Store) MessageByClientID(ctx context.Context, sender int64, clientMsgID string) (*store.Message, error) {
	if clientMsgID == "" {
		return nil, fmt.Errorf("%w: message", store.ErrNotFound)
	}
	return s.messageWhere(ctx, s.r, "message by client id", "sender_id = ? AND client_msg_id = ?", sender, clientMsgID)
}

// Conversation implements store.Messages.
func (s *Store) Conversation(ctx context.Context, convID string) (*store.Conversation, error) {
	var c store.Conversation
	var created, updated int64
	err := s.r.QueryRowContext(ctx, "SELECT id, kind, max_seq, last_msg_id, created_at, updated_at FROM conversations WHERE id = ?", convID).
		Scan(&c.ID, &c.Kind, &c.MaxSeq, &c.LastMsgID, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: conversation %.64q", store.ErrNotFound, convID)
	}
	if err != nil {
		return nil, wrap("conversation", err)
	}
	c.CreatedAt, c.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	return &c, nil
}

// countUnread counts the messages of convID in (from, to] that count as
// unread for user.
func countUnread(ctx context.Context, q querier, convID string, user, from, to int64) (int64, error) {
	if to <= from {
		return 0, nil
	}
	var n int64
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM messages WHERE conversation_id = ? AND seq > ? AND seq <= ?
		AND sender_id <> ? AND msg_type < ? AND status = 0`, convID, from, to, user, store.SystemTypeMin).Scan(&n)
	return n, err
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
	var out []store.UserConversation
	err := s.read(ctx, "conversations", func(tx *sql.Tx) error {
		var err error
		out, err = userConversations(ctx, tx, userID, limit, false, after)
		if err != nil {
			return err
		}
		// Last messages.
		ids := make([]int64, 0, len(out))
		for _, c := range out {
			ids = append(ids, c.LastMessage.ID)
		}
		last := make(map[int64]*store.Message, len(ids))
		for chunk := range chunkSlice(ids, maxInArgs) {
			rows, err := tx.QueryContext(ctx, "SELECT "+messageCols+" FROM messages WHERE id IN "+inList(len(chunk)), int64Args(chunk)...)
			if err != nil {
				return err
			}
			for rows.Next() {
				m, err := scanMessage(rows)
				if err != nil {
					rows.Close()
					return err
				}
				last[m.ID] = &m
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		for i := range out {
			out[i].LastMessage = last[out[i].LastMessage.ID]
		}
		return nil
	})
	return out, err
}

func chunkSlice(ids []int64, n int) func(func([]int64) bool) {
	return func(yield func([]int64) bool) {
		for len(ids) > 0 {
			k := min(n, len(ids))
			if !yield(ids[:k]) {
				return
			}
			ids = ids[k:]
		}
	}
}

// userConversations reads userID's entries with exact unread counts;
// LastMessage holds only the last message's id. limit <= 0: all.
func userConversations(ctx context.Context, tx *sql.Tx, userID int64, limit int, unmutedOnly bool, after store.ConversationCursor) ([]store.UserConversation, error) {
	q := `SELECT uc.conversation_id, c.max_seq, uc.read_seq, uc.delivered_seq, uc.unread, uc.last_seq, uc.muted, c.last_msg_id, c.updated_at
		FROM user_conversations AS uc JOIN conversations AS c ON c.id = uc.conversation_id WHERE uc.user_id = ?`
	args := []any{userID}
	if unmutedOnly {
		q += " AND uc.muted = 0"
	}
	if !after.IsZero() {
		ms := after.UpdatedAt.UnixMilli()
		q += " AND (c.updated_at < ? OR (c.updated_at = ? AND c.id > ?))"
		args = append(args, ms, ms, after.ConversationID)
	}
	q += " ORDER BY c.updated_at DESC, c.id"
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var out []store.UserConversation
	var lastSeqs []int64
	for rows.Next() {
		var c store.UserConversation
		var lastSeq, lastMsg, updated int64
		if err := rows.Scan(&c.ConversationID, &c.MaxSeq, &c.ReadSeq, &c.DeliveredSeq, &c.Unread, &lastSeq, &c.Muted, &lastMsg, &updated); err != nil {
			rows.Close()
			return nil, err
		}
		c.UpdatedAt = time.UnixMilli(updated)
		c.LastMessage = &store.Message{ID: lastMsg}
		out = append(out, c)
		lastSeqs = append(lastSeqs, lastSeq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		c := &out[i]
		// The tail after the accounted seq (read diffusion).
		n, err := countUnread(ctx, tx, c.ConversationID, userID, max(lastSeqs[i], c.ReadSeq), c.MaxSeq)
		if err != nil {
			return nil, err
		}
		c.Unread += n
	}
	return out, nil
}

// TotalUnread implements store.Messages.
func (s *Store) TotalUnread(ctx context.Context, userID int64) (int64, error) {
	var total int64
	err := s.read(ctx, "total unread", func(tx *sql.Tx) error {
		cs, err := userConversations(ctx, tx, userID, 0, true, store.ConversationCursor{})
		for _, c := range cs {
			total += c.Unread
		}
		return err
	})
	return total, err
}

// maxSeq returns a conversation's max_seq, or ErrNotFound.
func maxSeq(ctx context.Context, q querier, convID string) (int64, error) {
	var n int64
	err := q.QueryRowContext(ctx, "SELECT max_seq FROM conversations WHERE id = ?", convID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: conversation %.64q", store.ErrNotFound, convID)
	}
	return n, err
}

// MarkRead implements store.Messages.
func (s *Store) MarkRead(ctx context.Context, userID int64, convID string, seq int64) (store.ReadState, error) {
	if seq < 0 || userID <= 0 {
		return store.ReadState{}, fmt.Errorf("%w: mark read user %d seq %d", store.ErrInvalid, userID, seq)
	}
	var st store.ReadState
	err := s.write(ctx, "mark read", func(tx *sql.Tx) error {
		top, err := maxSeq(ctx, tx, convID)
		if err != nil {
			return err
		}
		seq = min(seq, top)
		st.MaxSeq = top
		var readSeq, lastSeq, unread int64
		err = tx.QueryRowContext(ctx, "SELECT read_seq, last_seq, unread FROM user_conversations WHERE user_id = ? AND conversation_id = ?",
			userID, convID).Scan(&readSeq, &lastSeq, &unread)
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if exists && seq <= readSeq {
			n, err := countUnread(ctx, tx, convID, userID, max(lastSeq, readSeq), top)
			st.ReadSeq, st.Unread = readSeq, unread+n
			return err
		}
		if seq < top {
			if unread, err = countUnread(ctx, tx, convID, userID, seq, top); err != nil {
				return err
			}
		} else {
			unread = 0
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO user_conversations (user_id, conversation_id, read_seq, last_seq, unread, updated_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, conversation_id) DO UPDATE SET
			read_seq = excluded.read_seq, last_seq = excluded.last_seq, unread = excluded.unread, updated_at = excluded.updated_at`,
			userID, convID, seq, top, unread, s.clock().UnixMilli())
		st.ReadSeq, st.Unread, st.Advanced = seq, unread, exists || seq > 0
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
	err := s.write(ctx, "mark delivered", func(tx *sql.Tx) error {
		top, err := maxSeq(ctx, tx, convID)
		if err != nil {
			return err
		}
		seq = min(seq, top)
		if seq == 0 {
			return nil
		}
		now := s.clock().UnixMilli()
		res, err := tx.ExecContext(ctx, `INSERT INTO delivery_cursors (user_id, conversation_id, device_key, delivered_seq, updated_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, conversation_id, device_key) DO UPDATE SET
			delivered_seq = excluded.delivered_seq, updated_at = excluded.updated_at WHERE excluded.delivered_seq > delivered_seq`,
			userID, convID, deviceKey, seq, now)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		advanced = true
		_, err = tx.ExecContext(ctx, `UPDATE user_conversations SET delivered_seq = ?
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
	return s.write(ctx, "set conversation muted", func(tx *sql.Tx) error {
		if _, err := maxSeq(ctx, tx, convID); err != nil {
			return err
		}
		// A new entry has read nothing (muting is not reading: it must not
		// count in read counts); its unread count is computed when read.
		_, err := tx.ExecContext(ctx, `INSERT INTO user_conversations (user_id, conversation_id, read_seq, last_seq, unread, muted, updated_at)
			VALUES (?, ?, 0, 0, 0, ?, ?) ON CONFLICT (user_id, conversation_id) DO UPDATE SET muted = excluded.muted`,
			userID, convID, muted, s.clock().UnixMilli())
		return err
	})
}

// ReadCount implements store.Messages.
func (s *Store) ReadCount(ctx context.Context, convID string, seq int64) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM user_conversations WHERE conversation_id = ? AND read_seq >= ?",
		convID, seq).Scan(&n)
	return n, wrap("read count", err)
}

// Readers implements store.Messages.
func (s *Store) Readers(ctx context.Context, convID string, seq int64) ([]int64, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT user_id FROM user_conversations WHERE conversation_id = ? AND read_seq >= ?", convID, seq)
	if err != nil {
		return nil, wrap("readers", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var u int64
		if err := rows.Scan(&u); err != nil {
			return nil, wrap("readers", err)
		}
		out = append(out, u)
	}
	return out, wrap("readers", rows.Err())
}

// Recall implements store.Messages.
func (s *Store) Recall(ctx context.Context, msgID int64, notice *store.Message) (*store.Message, store.AppendResult, error) {
	if notice == nil || notice.SenderID <= 0 {
		return nil, store.AppendResult{}, fmt.Errorf("%w: recall notice", store.ErrInvalid)
	}
	var recalled *store.Message
	var p *msgbatch.Plan
	err := s.write(ctx, "recall", func(tx *sql.Tx) error {
		m, err := s.messageWhere(ctx, tx, "recall", "id = ?", msgID)
		if err != nil {
			return err
		}
		if m.Status == store.StatusRecalled {
			return fmt.Errorf("%w: message %d already recalled", store.ErrConflict, msgID)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE messages SET status = ?, content = x'' WHERE id = ?", store.StatusRecalled, msgID); err != nil {
			return err
		}
		if m.Type < store.SystemTypeMin {
			// It no longer counts in the entries that counted it.
			if _, err := tx.ExecContext(ctx, `UPDATE user_conversations SET unread = unread - 1
				WHERE conversation_id = ? AND read_seq < ? AND last_seq >= ? AND user_id <> ? AND unread > 0`,
				m.ConversationID, m.Seq, m.Seq, m.SenderID); err != nil {
				return err
			}
		}
		m.Status, m.Content = store.StatusRecalled, nil
		recalled = m
		prepareNotice(notice, m)
		p = msgbatch.New([]*store.Message{notice}, s.clock())
		if err := p.Results[0].Err; err != nil {
			return err
		}
		return s.appendTx(ctx, tx, p)
	})
	if err != nil {
		return nil, store.AppendResult{}, err
	}
	return recalled, p.Finish()[0], nil
}

// prepareNotice fills the recall notice's fields from the recalled message.
func prepareNotice(notice, m *store.Message) {
	notice.ConversationID = m.ConversationID
	notice.ReceiverID = m.ReceiverID
	notice.GroupID = m.GroupID
	if notice.Type == 0 {
		notice.Type = store.TypeRecallNotice
	}
	notice.Content = store.RecallNoticeContent(m.ID, m.Seq)
}

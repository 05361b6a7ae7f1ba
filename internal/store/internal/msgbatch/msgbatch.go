// Package msgbatch is the implementation-independent part of
// store.Messages.AppendMessages: validation, idempotency keys within a
// batch, grouping by conversation, seq assignment and the per-user index
// deltas. The SQLite and MySQL stores run the same plan against their
// databases, so both give the same answers.
package msgbatch

import (
	"cmp"
	"slices"
	"time"

	"github.com/goimdev/goim/internal/store"
)

// Key is an idempotency key.
type Key struct {
	Sender      int64
	ClientMsgID string
}

// Plan is one AppendMessages call in progress.
type Plan struct {
	Msgs    []*store.Message
	Results []store.AppendResult
	Now     time.Time // millisecond precision

	dupOf  []int // index of the earlier message with the same key, or -1
	stored []bool
	// Keyed lists the messages to look up in the database: valid, with a
	// client id, first of their key in the batch.
	Keyed []int
	Convs []*Conv
}

// Conv is the part of a batch going to one conversation.
type Conv struct {
	ID   string
	Kind store.ConversationKind
	Msgs []int // indexes into Plan.Msgs, in slice order
	Base int64 // max_seq before the batch, set by Assign
}

// UserDelta is the change of one user's conversation entry.
type UserDelta struct {
	User    int64
	Unread  int64 // messages of the batch counting as unread for the user
	LastSeq int64 // the highest seq of the batch naming the user
}

// New validates msgs and finds the duplicates within the batch. now is
// the time given to messages without CreatedAt.
func New(msgs []*store.Message, now time.Time) *Plan {
	now = time.UnixMilli(now.UnixMilli())
	p := &Plan{
		Msgs:    msgs,
		Results: make([]store.AppendResult, len(msgs)),
		Now:     now,
		dupOf:   make([]int, len(msgs)),
		stored:  make([]bool, len(msgs)),
	}
	var first map[Key]int
	for i, m := range msgs {
		p.dupOf[i] = -1
		if err := store.ValidateMessage(m); err != nil {
			p.Results[i].Err = err
			continue
		}
		if m.ClientMsgID == "" {
			continue
		}
		if first == nil {
			first = make(map[Key]int, len(msgs))
		}
		k := Key{m.SenderID, m.ClientMsgID}
		if j, ok := first[k]; ok {
			p.dupOf[i] = j
			continue
		}
		first[k] = i
		p.Keyed = append(p.Keyed, i)
	}
	return p
}

// Reset forgets what a failed attempt found (lookups, groups, seqs), for a
// retry of the transaction.
func (p *Plan) Reset() {
	for i := range p.Results {
		if p.Results[i].Err == nil {
			p.Results[i] = store.AppendResult{}
		}
		p.stored[i] = false
	}
	p.Convs = p.Convs[:0]
}

// Found records that message i's key is already stored as orig.
func (p *Plan) Found(i int, orig store.AppendResult) {
	orig.Duplicate = true
	orig.Err = nil
	p.Results[i] = orig
	p.stored[i] = true // "settled": not to be inserted
}

// Group sorts the messages to insert by conversation, in order of first
// appearance, each conversation's messages in slice order. Call it after
// the lookups (Found).
func (p *Plan) Group() []*Conv {
	byID := make(map[string]*Conv)
	for i, m := range p.Msgs {
		if p.Results[i].Err != nil || p.dupOf[i] >= 0 || p.stored[i] {
			continue
		}
		c := byID[m.ConversationID]
		if c == nil {
			kind, _, _, _ := store.ParseConversationID(m.ConversationID) // validated
			c = &Conv{ID: m.ConversationID, Kind: kind}
			byID[m.ConversationID] = c
			p.Convs = append(p.Convs, c)
		}
		c.Msgs = append(c.Msgs, i)
	}
	return p.Convs
}

// LastMsg returns the id of the conversation's last message in the batch.
func (p *Plan) LastMsg(c *Conv) int64 { return p.Msgs[c.Msgs[len(c.Msgs)-1]].ID }

// LastAt returns the creation time (unix ms) of the conversation's last
// message in the batch: the conversation's activity time.
func (p *Plan) LastAt(c *Conv) int64 { return p.createdAt(c.Msgs[len(c.Msgs)-1]).UnixMilli() }

func (p *Plan) createdAt(i int) time.Time {
	if t := p.Msgs[i].CreatedAt; !t.IsZero() {
		return time.UnixMilli(t.UnixMilli())
	}
	return p.Now
}

// Assign gives c's messages the seqs base+1, base+2, ... .
func (p *Plan) Assign(c *Conv, base int64) {
	c.Base = base
	for k, i := range c.Msgs {
		p.Results[i] = store.AppendResult{ID: p.Msgs[i].ID, Seq: base + int64(k) + 1, CreatedAt: p.createdAt(i)}
	}
}

// Deltas returns the index changes of c's messages, by user ascending (a
// stable lock order).
func (p *Plan) Deltas(c *Conv) []UserDelta {
	var ds []UserDelta
	pos := make(map[int64]int)
	for _, i := range c.Msgs {
		m := p.Msgs[i]
		for _, u := range m.IndexUsers {
			j, ok := pos[u]
			if !ok {
				j = len(ds)
				pos[u] = j
				ds = append(ds, UserDelta{User: u})
			}
			d := &ds[j]
			if d.LastSeq == p.Results[i].Seq {
				continue // u listed twice in one message
			}
			d.LastSeq = p.Results[i].Seq
			if m.CountsAsUnread(u) {
				d.Unread++
			}
		}
	}
	slices.SortFunc(ds, func(a, b UserDelta) int { return cmp.Compare(a.User, b.User) })
	return ds
}

// Finish resolves the duplicates within the batch and, on success, sets
// Seq and CreatedAt of the stored messages. It returns the results.
func (p *Plan) Finish() []store.AppendResult {
	for i, j := range p.dupOf {
		if j >= 0 {
			r := p.Results[j]
			r.Duplicate = true
			p.Results[i] = r
		}
	}
	for i, m := range p.Msgs {
		r := p.Results[i]
		if r.Err == nil && !r.Duplicate {
			m.Seq, m.CreatedAt = r.Seq, r.CreatedAt
		}
	}
	return p.Results
}

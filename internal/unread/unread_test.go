package unread_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/sqlite"
	"github.com/goimdev/goim/internal/store/storetest"
	"github.com/goimdev/goim/internal/testenv"
	"github.com/goimdev/goim/internal/unread"
)

type fixture struct {
	t      *testing.T
	st     store.Messages
	rdb    *redis.Client
	prefix string
	u      *unread.Redis
}

func newFixture(t *testing.T, wrap func(unread.Source) unread.Source) *fixture {
	t.Helper()
	addr, prefix := testenv.RedisAddr(t), testenv.RedisPrefix(t)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "goim.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	var src unread.Source = st
	if wrap != nil {
		src = wrap(st)
	}
	u, err := unread.New(rdb, src, unread.Config{Prefix: prefix, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, st: st, rdb: rdb, prefix: prefix, u: u}
}

// send stores msgs and tells the mirror, participants as given.
func (f *fixture) send(users []int64, msgs ...*store.Message) {
	f.t.Helper()
	ctx := context.Background()
	res, err := f.st.AppendMessages(ctx, msgs)
	if err != nil {
		f.t.Fatal(err)
	}
	var es []unread.Entry
	for i, m := range msgs {
		if res[i].Err != nil || res[i].Duplicate {
			f.t.Fatalf("append %d: %+v", i, res[i])
		}
		es = append(es, unread.Entry{ConversationID: m.ConversationID, Seq: res[i].Seq, SenderID: m.SenderID, Counts: true, Users: users})
	}
	if err := f.u.Committed(ctx, es); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) read(user int64, conv string, seq int64) {
	f.t.Helper()
	st, err := f.st.MarkRead(context.Background(), user, conv, seq)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.u.Read(context.Background(), user, conv, st.Unread, st.MaxSeq); err != nil {
		f.t.Fatal(err)
	}
}

// check compares the mirror's counts of user with the store's.
func (f *fixture) check(what string, user int64) {
	f.t.Helper()
	ctx := context.Background()
	cs, err := f.st.Conversations(ctx, user, store.MaxPageLimit)
	if err != nil {
		f.t.Fatal(err)
	}
	want, err := f.st.TotalUnread(ctx, user)
	if err != nil {
		f.t.Fatal(err)
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ConversationID
	}
	total, counts, err := f.u.Counts(ctx, user, ids)
	if err != nil {
		f.t.Fatalf("%s: Counts: %v", what, err)
	}
	if total != want {
		f.t.Errorf("%s: user %d total %d, store %d", what, user, total, want)
	}
	for _, c := range cs {
		if counts[c.ConversationID] != c.Unread {
			f.t.Errorf("%s: user %d %s: %d, store %d", what, user, c.ConversationID, counts[c.ConversationID], c.Unread)
		}
	}
}

// flush deletes every key of the mirror.
func (f *fixture) flush() {
	f.t.Helper()
	ctx := context.Background()
	keys, err := f.rdb.Keys(ctx, f.prefix+"*").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	if len(keys) > 0 {
		f.rdb.Del(ctx, keys...)
	}
}

// TestMirror: counts follow writes, reads and mutes, and come back right
// after Redis lost them.
func TestMirror(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, u := range []int64{1, 2, 3} {
		f.check("empty", u)
	}
	pair := []int64{1, 2}
	group := []int64{1, 2, 3}
	n := 0
	msg := func(from, to int64) *store.Message {
		n++
		return storetest.PairMsg(from, to, fmt.Sprint("m", n), "x")
	}
	gmsg := func(from int64) *store.Message {
		n++
		return storetest.GroupMsg(7, from, fmt.Sprint("g", n), "x", group...)
	}
	f.send(pair, msg(1, 2), msg(1, 2), msg(2, 1))
	f.send(group, gmsg(1), gmsg(2), gmsg(3))
	for _, u := range group {
		f.check("after sends", u)
	}
	f.send(pair, msg(1, 2))
	f.send(group, gmsg(1))
	f.read(2, store.PairConversationID(1, 2), 2)
	f.read(3, store.GroupConversationID(7), 5)
	for _, u := range group {
		f.check("after reads", u)
	}
	if err := f.st.SetConversationMuted(ctx, 2, store.GroupConversationID(7), true); err != nil {
		t.Fatal(err)
	}
	if err := f.u.Invalidate(ctx, 2); err != nil {
		t.Fatal(err)
	}
	f.send(group, gmsg(3))
	f.check("muted", 2)
	// A message counted twice (a duplicate notification) counts once.
	res, _ := f.st.Conversation(ctx, store.PairConversationID(1, 2))
	if err := f.u.Committed(ctx, []unread.Entry{{ConversationID: res.ID, Seq: res.MaxSeq, SenderID: 1, Counts: true, Users: pair}}); err != nil {
		t.Fatal(err)
	}
	f.check("repeated notification", 2)
	// Redis loses everything: rebuilt from the store.
	f.flush()
	for _, u := range group {
		f.check("after a flush", u)
	}
	f.send(pair, msg(2, 1))
	f.send(group, gmsg(2))
	for _, u := range group {
		f.check("after a flush and more sends", u)
	}
}

// racingSource is a store whose first snapshot is overtaken by a write: a
// message is stored and notified after the snapshot was read, before it is
// stored in Redis.
type racingSource struct {
	unread.Source
	f    *fixture
	once atomic.Bool
}

func (r *racingSource) ConversationsAfter(ctx context.Context, user int64, after store.ConversationCursor, limit int) ([]store.UserConversation, error) {
	cs, err := r.Source.ConversationsAfter(ctx, user, after, limit)
	if r.once.CompareAndSwap(false, true) {
		r.f.send([]int64{1, 2}, storetest.PairMsg(1, 2, "race", "x"))
	}
	return cs, err
}

// TestRebuildRace: a rebuild whose snapshot a write overtook is not
// stored (the write was not lost).
func TestRebuildRace(t *testing.T) {
	var rs *racingSource
	f := newFixture(t, func(s unread.Source) unread.Source { rs = &racingSource{Source: s}; return rs })
	rs.once.Store(true)
	f.send([]int64{1, 2}, storetest.PairMsg(1, 2, "first", "x"))
	f.flush()
	rs.f = f
	rs.once.Store(false)
	if _, _, err := f.u.Counts(context.Background(), 2, nil); err != nil { // the racing rebuild
		t.Fatal(err)
	}
	f.check("after a racing rebuild", 2)
}

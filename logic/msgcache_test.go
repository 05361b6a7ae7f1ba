package logic

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/msgcache"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// countingMessages counts the page reads that reach the store.
type countingMessages struct {
	msgStore // everything else, forwarded
	inner    store.Messages
	pages    atomic.Int64
}

type msgStore = store.Messages

func (c *countingMessages) Messages(ctx context.Context, convID string, after, before int64, limit int) ([]store.Message, bool, error) {
	c.pages.Add(1)
	return c.inner.Messages(ctx, convID, after, before, limit)
}

// newEnvMsgCache is newEnv with an in-process message cache in front of
// a page-counting store.
func newEnvMsgCache(t *testing.T) (*env, *countingMessages, *msgcache.Cache) {
	return newEnvMsgCacheWith(t, func(*msgcache.Config) {}, nil)
}

// newEnvMsgCacheWith is newEnvMsgCache with a changed cache configuration
// and the cache given to the service wrapped (wrap nil: as is).
func newEnvMsgCacheWith(t *testing.T, mut func(*msgcache.Config), wrap func(MessageCache) MessageCache) (*env, *countingMessages, *msgcache.Cache) {
	t.Helper()
	st := openSQLite(t)
	cm := &countingMessages{inner: st.(store.Messages), msgStore: st.(store.Messages)}
	mcfg := msgcache.DefaultConfig()
	mcfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	mut(&mcfg)
	mc := msgcache.New(msgcache.NewMemory(msgcache.MemoryConfig{WindowSize: 100}), cm, mcfg)
	var svcCache MessageCache = mc
	if wrap != nil {
		svcCache = wrap(mc)
	}
	iss, err := auth.NewIssuer(testSecret, testIssuerName)
	if err != nil {
		t.Fatal(err)
	}
	mb := bus.NewMemory(bus.MemoryConfig{})
	t.Cleanup(func() { mb.Close() })
	rb := &recBus{Memory: mb}
	reg := newTestRegistry()
	rc := &recCache{}
	cfg := DefaultConfig()
	cfg.Password = auth.TestPasswordParams()
	noRateLimit(&cfg)
	svc, err := New(cfg, Deps{Store: st, Issuer: iss, Sessions: reg, Bus: rb, Cache: rc, Messages: cm, MessageCache: svcCache},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &env{svc: svc, srv: srv, reg: reg, bus: rb, issuer: iss, st: st, cache: rc}, cm, mc
}

// TestHistoryFromMessageCache: history and Sync pages of a hot
// conversation come from the message cache (no store page read), stay
// correct after a recall, and fall back to the store outside the window.
func TestHistoryFromMessageCache(t *testing.T) {
	e, cm, mc := newEnvMsgCache(t)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	conv := store.PairConversationID(alice.id, bob.id)
	const n = 30
	var ids []string
	for i := range n {
		ack := e.sendOK(t, alice, "a1", text(fmt.Sprintf("m%d", i), bob.id, 0, fmt.Sprint("message ", i)))
		ids = append(ids, ack["msg_id"].(string))
	}
	before := cm.pages.Load()
	r := e.reply(t, bob, "b1", protocol.OpSync, map[string]any{"conversation_id": conv, "after_seq": 0, "limit": 20})
	if s := idsOf(t, list(t, r, "messages"), "seq"); len(s) != 20 || s[0] != 1 || r["has_more"] != true {
		t.Fatalf("first page %v %v", s, r["has_more"])
	}
	r = e.reply(t, bob, "b1", protocol.OpSync, map[string]any{"conversation_id": conv, "after_seq": 20, "limit": 20})
	if s := idsOf(t, list(t, r, "messages"), "seq"); len(s) != 10 || s[9] != n || r["has_more"] != false {
		t.Fatalf("second page %v %v", s, r["has_more"])
	}
	m := e.ok(t, bob, http.StatusOK, "GET", path("/api/v1/conversations/%s/messages?before_seq=10&limit=3", conv), nil)
	if s := idsOf(t, list(t, m, "messages"), "seq"); !slices.Equal(s, []int64{7, 8, 9}) || m["has_more"] != true {
		t.Fatalf("page before 10: %v %v", s, m["has_more"])
	}
	if got := cm.pages.Load() - before; got != 0 {
		t.Fatalf("%d page reads reached the store on cache hits", got)
	}
	if s := mc.Stats(); s.Hits != 3 || s.Misses != 0 {
		t.Fatalf("cache stats %+v", s)
	}

	// Recall message 5: the history shows it recalled, and the notice.
	m = e.ok(t, alice, http.StatusOK, "POST", "/api/v1/messages/"+ids[4]+"/recall", nil)
	if num(t, m["notice_seq"]) != n+1 {
		t.Fatalf("recall %v", m)
	}
	m = e.ok(t, bob, http.StatusOK, "GET", path("/api/v1/conversations/%s/messages?after_seq=4&limit=1", conv), nil)
	got := list(t, m, "messages")
	if len(got) != 1 || num(t, got[0]["status"]) != store.StatusRecalled || got[0]["content"] != nil || m["has_more"] != true {
		t.Fatalf("recalled message %v", m)
	}
	r = e.reply(t, bob, "b1", protocol.OpSync, map[string]any{"conversation_id": conv, "after_seq": n})
	if page := list(t, r, "messages"); len(page) != 1 || num(t, page[0]["type"]) != store.TypeRecallNotice {
		t.Fatalf("sync after recall %v", r)
	}
	// Every page read through the cache equals the store's.
	for _, q := range [][3]int64{{0, 0, 50}, {4, 0, 1}, {0, 10, 3}, {25, 0, 10}} {
		viaCache, more1, err1 := e.svc.pageMessages(context.Background(), conv, q[0], q[1], int(q[2]))
		direct, more2, err2 := cm.inner.Messages(context.Background(), conv, q[0], q[1], int(q[2]))
		if err1 != nil || err2 != nil || more1 != more2 || len(viaCache) != len(direct) {
			t.Fatalf("page %v: cache %d %v %v, store %d %v %v", q, len(viaCache), more1, err1, len(direct), more2, err2)
		}
		for i := range direct {
			if viaCache[i].Seq != direct[i].Seq || viaCache[i].Status != direct[i].Status || string(viaCache[i].Content) != string(direct[i].Content) {
				t.Fatalf("page %v message %d: %+v vs %+v", q, i, viaCache[i], direct[i])
			}
		}
	}
}

// holdingCache holds the committer's next cache write until release is
// closed (reached is closed when it waits).
type holdingCache struct {
	MessageCache
	armed            atomic.Bool
	reached, release chan struct{}
}

func (h *holdingCache) Committed(ctx context.Context, msgs []*store.Message) {
	if h.armed.CompareAndSwap(true, false) {
		close(h.reached)
		<-h.release
	}
	h.MessageCache.Committed(ctx, msgs)
}

// TestRecallBeforeCacheWrite: a message recalled after its commit but
// before the committer wrote it into the cache (a slow committer, a
// recall fence already expired) is never served unrecalled from the cache
// once the recall was answered.
func TestRecallBeforeCacheWrite(t *testing.T) {
	h := &holdingCache{reached: make(chan struct{}), release: make(chan struct{})}
	e, _, _ := newEnvMsgCacheWith(t, func(c *msgcache.Config) { c.RecallFence = time.Nanosecond },
		func(mc MessageCache) MessageCache { h.MessageCache = mc; return h })
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	conv := store.PairConversationID(alice.id, bob.id)
	h.armed.Store(true)
	sent := make(chan struct{})
	go func() { defer close(sent); e.sendOK(t, alice, "a1", text("m1", bob.id, 0, "secret")) }()
	<-h.reached // stored, not yet in the cache
	m, err := e.svc.msgs.MessageByClientID(context.Background(), alice.id, "m1")
	if err != nil {
		t.Fatal(err)
	}
	recalled := make(chan struct{})
	go func() {
		defer close(recalled)
		e.ok(t, alice, http.StatusOK, "POST", fmt.Sprintf("/api/v1/messages/%d/recall", m.ID), nil)
	}()
	// Let the recall get as far as it goes without the cache write.
	for done := false; !done; {
		select {
		case <-recalled:
			done = true
		default:
			if e.svc.commit.cacheWaiting.Load() > 0 {
				done = true
			} else {
				time.Sleep(time.Millisecond)
			}
		}
	}
	close(h.release)
	<-recalled
	<-sent
	page := e.ok(t, bob, http.StatusOK, "GET", path("/api/v1/conversations/%s/messages?after_seq=0&limit=10", conv), nil)
	got := list(t, page, "messages")
	if len(got) != 2 || num(t, got[0]["status"]) != store.StatusRecalled || got[0]["content"] != nil {
		t.Fatalf("history after the recall: %v", got)
	}
}

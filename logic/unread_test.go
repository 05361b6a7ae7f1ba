package logic

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/testenv"
	"github.com/goimdev/goim/internal/unread"
	"github.com/goimdev/goim/protocol"
)

// TestUnreadMirror: with the Redis mirror, the conversation list's counts
// and total equal the store's through sends (one-to-one, small and large
// groups), reads, mutes and recalls, and again after the mirror's keys
// were deleted.
func TestUnreadMirror(t *testing.T) {
	addr, prefix := testenv.RedisAddr(t), testenv.RedisPrefix(t)
	forEachMsgStore(t, func(t *testing.T, e *env) {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { rdb.Close() })
		pre := fmt.Sprintf("%s%s:", prefix, t.Name())
		u, err := unread.New(rdb, e.svc.msgs, unread.Config{Prefix: pre, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		e.svc.unread = u // before the committer starts
		alice, bob, carol, dave := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol"), e.user(t, "dave")
		users := []tuser{alice, bob, carol, dave}
		small := e.newGroup(t, alice, bob, carol)
		large := e.newGroup(t, alice, bob, carol, dave) // above the threshold of 3
		check := func(what string) {
			t.Helper()
			for _, us := range users {
				m := e.ok(t, us, http.StatusOK, "GET", "/api/v1/conversations", nil)
				want, err := e.svc.msgs.TotalUnread(context.Background(), us.id)
				if err != nil {
					t.Fatal(err)
				}
				if got := numTB(t, m["total_unread"]); got != want {
					t.Fatalf("%s: %s's total %d, store %d", what, us.name, got, want)
				}
				cs, err := e.svc.msgs.Conversations(context.Background(), us.id, 100)
				if err != nil {
					t.Fatal(err)
				}
				byID := map[string]int64{}
				for _, c := range cs {
					byID[c.ConversationID] = c.Unread
				}
				for _, c := range list(t, m, "conversations") {
					if got, want := numTB(t, c["unread"]), byID[c["conversation_id"].(string)]; got != want {
						t.Fatalf("%s: %s's %s unread %d, store %d", what, us.name, c["conversation_id"], got, want)
					}
				}
			}
		}
		check("empty")
		n := 0
		send := func(from tuser, to tuser, group int64) map[string]any {
			n++
			return e.sendOK(t, from, "k", text(fmt.Sprint("u", n), to.id, group, "x"))
		}
		send(alice, bob, 0)
		send(bob, alice, 0)
		send(alice, tuser{}, small)
		send(carol, tuser{}, large)
		check("first sends")
		ack := send(alice, bob, 0)
		send(bob, tuser{}, small)
		send(alice, tuser{}, large)
		send(carol, dave, 0)
		check("more sends")
		e.reply(t, bob, "b1", protocol.OpAck, map[string]any{"conversation_id": store.PairConversationID(alice.id, bob.id), "seq": 2, "kind": "read"})
		e.ok(t, dave, http.StatusOK, "POST", path("/api/v1/conversations/%s/read", store.GroupConversationID(large)), map[string]any{"seq": 1})
		check("reads")
		e.ok(t, carol, http.StatusOK, "PUT", path("/api/v1/conversations/%s/mute", store.GroupConversationID(small)), map[string]any{"muted": true})
		check("mute")
		e.ok(t, alice, http.StatusOK, "POST", "/api/v1/messages/"+ack["msg_id"].(string)+"/recall", nil)
		check("recall")
		keys, err := rdb.Keys(context.Background(), pre+"*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("no mirror keys (%v)", err)
		}
		rdb.Del(context.Background(), keys...)
		check("after losing Redis")
		send(dave, carol, 0)
		send(bob, tuser{}, large)
		check("sends after losing Redis")
	}, noRateLimit, func(c *Config) { c.LargeGroupThreshold = 3 })
}

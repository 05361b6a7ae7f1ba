package standalone

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/goimdev/goim/client"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/testenv"
)

// TestMessageCacheWiring: the server's recent-message cache (in-process by
// default, Redis with cache.driver redis when GOIM_TEST_REDIS_ADDR is set)
// serves Sync pages of a hot conversation and reflects a recall.
func TestMessageCacheWiring(t *testing.T) {
	drivers := map[string]func(t *testing.T) func(*config.Config){
		"memory": func(*testing.T) func(*config.Config) { return func(*config.Config) {} },
		"redis": func(t *testing.T) func(*config.Config) {
			addr, prefix := testenv.RedisAddr(t), testenv.RedisPrefix(t)
			return func(c *config.Config) {
				c.Cache.Driver, c.Cache.RedisAddr = "redis", addr
				c.Cache.Redis.Prefix, c.Cache.Messages.Redis.Prefix = prefix+"rel:", prefix+"msg:"
			}
		},
	}
	for name, mut := range drivers {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, mut(t))
			ctx := testCtx(t)
			mc := s.MessageCache()
			if mc == nil {
				t.Fatal("no message cache")
			}
			alice, bob := newUser(t, s, "mcalice"), newUser(t, s, "mcbob")
			a := dial(t, s, "tcp", alice, client.Config{Platform: "pc"})
			b := dial(t, s, "ws", bob, client.Config{Platform: "web"})
			var first client.SendAck
			for i := range 8 {
				ack, err := a.SendMessage(ctx, textReq(fmt.Sprint("mc", i), bob.id, 0, fmt.Sprint("hot ", i)))
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = ack
				}
			}
			conv := first.ConversationID
			hits := mc.Stats().Hits
			resp, err := b.Sync(ctx, client.SyncReq{ConversationID: conv, AfterSeq: 0, Limit: 5})
			if err != nil || len(resp.Messages) != 5 || resp.Messages[0].Seq != 1 || !resp.HasMore || string(resp.Messages[1].Content) != `{"text":"hot 1"}` {
				t.Fatalf("first page %+v %v", resp, err)
			}
			resp, err = b.Sync(ctx, client.SyncReq{ConversationID: conv, AfterSeq: 5, Limit: 5})
			if err != nil || len(resp.Messages) != 3 || resp.Messages[2].Seq != 8 || resp.HasMore {
				t.Fatalf("second page %+v %v", resp, err)
			}
			if got := mc.Stats().Hits - hits; got != 2 {
				t.Fatalf("%d cache hits, want 2 (%+v)", got, mc.Stats())
			}
			if err := s.api().WithToken(alice.token).Do(ctx, http.MethodPost, "/api/v1/messages/"+first.MsgID+"/recall", nil, nil); err != nil {
				t.Fatal(err)
			}
			resp, err = b.Sync(ctx, client.SyncReq{ConversationID: conv, AfterSeq: 0, Limit: 50})
			if err != nil || len(resp.Messages) != 9 || resp.Messages[0].Status != client.StatusRecalled || len(resp.Messages[0].Content) != 0 || resp.HasMore {
				t.Fatalf("after recall %+v %v", resp, err)
			}
		})
	}
}

package logic

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// TestReadCountLargeGroupUnread: a group read count counts only current
// members but the sender whose cursor is at or past the message (not an
// entry made by muting, not a member who left, not the sender); a member
// of a large (read-diffusion) group who never read anything has the group
// in its list and in total_unread.
func TestReadCountLargeGroupUnread(t *testing.T) {
	forEachMsgStore(t, func(t *testing.T, e *env) {
		alice, bob, carol, dave, frank := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol"), e.user(t, "dave"), e.user(t, "frank")
		group := e.newGroup(t, alice, bob, carol, dave, frank) // 5 members: above the threshold of 2
		conv := store.GroupConversationID(group)
		e.sendOK(t, alice, "a1", text("l1", 0, group, "one"))
		e.sendOK(t, alice, "a1", text("l2", 0, group, "two"))
		e.sendOK(t, carol, "c1", text("l3", 0, group, "three"))
		read := func(u tuser, seq int64) {
			e.ok(t, u, http.StatusOK, "POST", path("/api/v1/conversations/%s/read", conv), map[string]any{"seq": seq})
		}
		read(bob, 1)
		read(alice, 3) // the sender of 1 and 2
		read(dave, 3)
		e.ok(t, carol, http.StatusOK, "PUT", path("/api/v1/conversations/%s/mute", conv), map[string]any{"muted": true})
		e.ok(t, dave, http.StatusNoContent, "DELETE", path("/api/v1/groups/%d/members/%d", group, dave.id), nil)
		for _, tt := range []struct{ seq, want int64 }{{1, 1}, {2, 0}, {3, 1}} { // 3: carol's, read by alice
			m := e.ok(t, bob, http.StatusOK, "GET", path("/api/v1/conversations/%s/messages/%d/reads", conv, tt.seq), nil)
			if got := numTB(t, m["read_count"]); got != tt.want {
				t.Errorf("read count of seq %d = %d, want %d", tt.seq, got, tt.want)
			}
		}
		// frank never read anything: 3 unread in the list and the total.
		m := e.ok(t, frank, http.StatusOK, "GET", "/api/v1/conversations", nil)
		convs := list(t, m, "conversations")
		if numTB(t, m["total_unread"]) != 3 || len(convs) != 1 || convs[0]["conversation_id"] != conv || numTB(t, convs[0]["unread"]) != 3 {
			t.Fatalf("frank's list %v", m)
		}
		// carol muted it: listed, not in her total.
		m = e.ok(t, carol, http.StatusOK, "GET", "/api/v1/conversations", nil)
		if numTB(t, m["total_unread"]) != 0 || len(list(t, m, "conversations")) != 1 {
			t.Fatalf("carol's list %v", m)
		}
	}, noRateLimit, func(c *Config) { c.LargeGroupThreshold = 2 })
}

// TestConversationPaging: the conversation list pages with limit and
// cursor, over HTTP and Op 18, without a fixed cap.
func TestConversationPaging(t *testing.T) {
	forEachMsgStore(t, func(t *testing.T, e *env) {
		alice := e.user(t, "alice")
		const n = 5
		var want []string
		for i := range n {
			peer := e.user(t, fmt.Sprint("peer", i))
			e.sendOK(t, peer, "k", text(fmt.Sprint("p", i), alice.id, 0, "hi"))
			want = append(want, store.PairConversationID(alice.id, peer.id))
		}
		slices.Sort(want)
		for _, viaOp := range []bool{false, true} {
			var got []string
			cursor := ""
			for pages := 1; ; pages++ {
				var m map[string]any
				if viaOp {
					m = e.reply(t, alice, "k", protocol.OpSync, map[string]any{"conversations": true, "limit": 2, "cursor": cursor})
				} else {
					m = e.ok(t, alice, http.StatusOK, "GET", "/api/v1/conversations?limit=2&cursor="+url.QueryEscape(cursor), nil)
				}
				page := list(t, m, "conversations")
				for _, c := range page {
					got = append(got, c["conversation_id"].(string))
				}
				if numTB(t, m["total_unread"]) != n {
					t.Fatalf("total unread %v", m["total_unread"])
				}
				if m["has_more"] != true {
					if pages != 3 || len(page) != 1 || m["next_cursor"] != nil {
						t.Fatalf("last page %d: %v", pages, m)
					}
					break
				}
				if len(page) != 2 || pages > 3 {
					t.Fatalf("page %d: %v", pages, m)
				}
				cursor = m["next_cursor"].(string)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("via op %v: paged %v, want %v", viaOp, got, want)
			}
		}
		st, m := e.call(t, alice, "GET", "/api/v1/conversations?cursor=nope", nil)
		wantErr(t, "bad cursor", st, m, http.StatusBadRequest, protocol.CodeBadRequest)
	}, noRateLimit)
}

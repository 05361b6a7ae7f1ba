package logic

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/protocol"
)

// FuzzMessagingOps feeds arbitrary bodies to the messaging ops through
// Receive: never an error, never a panic; ops 4, 18 and 20 always answer
// their reply op with a JSON object carrying "code"; Op 23 never answers.
func FuzzMessagingOps(f *testing.F) {
	e := newEnv(f, noRateLimit)
	ctx := context.Background()
	seeds := []string{
		`{"client_msg_id":"x","to_user":2,"type":1,"content":{"text":"hi"}}`,
		`{"client_msg_id":"y","group_id":1,"type":6,"content":{"a":[1,2,{}]}}`,
		`{"client_msg_id":"z","to_user":2,"type":4,"content":{"url":"u","duration_ms":-1}}`,
		`{"conversation_id":"p_1_2","after_seq":0,"limit":5}`,
		`{"conversations":true,"limit":-3}`,
		`{"conversation_id":"p_1_2","seq":1,"kind":"read"}`,
		`{"conversation_id":"g_0","seq":9223372036854775807,"kind":"delivered"}`,
		`{"conversation_id":"p_2_1"}`,
		``, `null`, `[]`, `{`, `{"content":{"text":"\u0000"}}`,
	}
	for _, s := range seeds {
		for _, op := range []uint8{4, 18, 20, 23} {
			f.Add(op, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, opSel uint8, body []byte) {
		op := []int32{protocol.OpSendMsg, protocol.OpSync, protocol.OpAck, protocol.OpTyping}[opSel%4]
		p, err := e.svc.Receive(ctx, &comet.ReceiveRequest{Server: testComet, UserID: 1, Key: "k", Packet: protocol.Packet{Ver: 1, Op: op, Seq: 5, Body: body}})
		if err != nil {
			t.Fatalf("op %d %q: %v", op, body, err)
		}
		if op == protocol.OpTyping {
			if p != nil {
				t.Fatalf("typing answered %s", p.Body)
			}
			return
		}
		if p == nil || p.Op != op+1 || p.Seq != 5 {
			t.Fatalf("op %d %q: reply %+v", op, body, p)
		}
		var m map[string]any
		if err := json.Unmarshal(p.Body, &m); err != nil || m["code"] == nil {
			t.Fatalf("op %d %q: reply body %s", op, body, p.Body)
		}
	})
}

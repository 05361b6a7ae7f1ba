package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// testComet is the comet name of the sessions the messaging tests register.
const testComet = "comet-1"

// forEachMsgStore is forEachStore for the messaging tests: it skips a
// store that does not implement store.Messages yet.
func forEachMsgStore(t *testing.T, fn func(t *testing.T, e *env), mut ...func(*Config)) {
	for _, f := range storeFactories {
		t.Run(f.name, func(t *testing.T) {
			st := f.open(t)
			if _, ok := st.(store.Messages); !ok {
				t.Skipf("the %s store does not implement store.Messages yet", f.name)
			}
			fn(t, newEnvStore(t, st, nil, mut...))
		})
	}
}

// noRateLimit disables the per-user send limit.
func noRateLimit(c *Config) { c.SendRate = -1 }

// receive runs one client packet through Receive as u on connection key.
func (e *env) receive(t testing.TB, u tuser, key string, op int32, body any) *protocol.Packet {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := e.svc.Receive(ctx, &comet.ReceiveRequest{Server: testComet, UserID: u.id, Key: key, Packet: protocol.Packet{Ver: 1, Op: op, Seq: 77, Body: b}})
	if err != nil {
		t.Fatalf("Receive op %d: %v", op, err)
	}
	return p
}

// reply runs a request op and decodes its reply, checking the reply op.
func (e *env) reply(t testing.TB, u tuser, key string, op int32, body any) map[string]any {
	t.Helper()
	p := e.receive(t, u, key, op, body)
	if p == nil {
		t.Fatalf("op %d: no reply", op)
	}
	if p.Op != op+1 || p.Seq != 77 || p.Ver != 1 {
		t.Fatalf("op %d: reply op %d seq %d ver %d", op, p.Op, p.Seq, p.Ver)
	}
	return decodeObj(t, p.Body)
}

func decodeObj(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("reply body %q: %v", b, err)
	}
	return m
}

// text is a SendReq of a text message to a user (to > 0) or a group
// (group > 0).
func text(cmid string, to, group int64, s string) map[string]any {
	m := map[string]any{"client_msg_id": cmid, "type": 1, "content": map[string]any{"text": s}}
	if to != 0 {
		m["to_user"] = to
	}
	if group != 0 {
		m["group_id"] = group
	}
	return m
}

// sendOK sends over Op 4 and fails unless acknowledged.
func (e *env) sendOK(t testing.TB, u tuser, key string, req map[string]any) map[string]any {
	t.Helper()
	ack := e.reply(t, u, key, protocol.OpSendMsg, req)
	if fmt.Sprint(ack["code"]) != "0" {
		t.Fatalf("send as %s: %v", u.name, ack)
	}
	return ack
}

// sendRefused sends over Op 4 and asserts a refusal code.
func (e *env) sendRefused(t testing.TB, u tuser, key string, req any, code string) {
	t.Helper()
	ack := e.reply(t, u, key, protocol.OpSendMsg, req)
	if ack["code"] != code {
		t.Fatalf("send as %s: %v, want code %s", u.name, ack, code)
	}
	if msg, _ := ack["message"].(string); msg == "" {
		t.Fatalf("refusal without a message: %v", ack)
	}
}

// collector accumulates the events published on the bus.
type collector struct {
	e   *env
	all []event
}

// waitFor polls the bus until cond holds for the events seen so far.
func (c *collector) waitFor(t testing.TB, what string, cond func(evs []event) bool) []event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.all = append(c.all, c.e.eventsTB(t)...)
		if cond(c.all) {
			return c.all
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; %d events seen", what, len(c.all))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// countType counts the (event, key) deliveries of type typ.
func countType(evs []event, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.body["type"] == typ {
			n += len(ev.keys)
		}
	}
	return n
}

// eventsTB is events for testing.TB.
func (e *env) eventsTB(t testing.TB) []event {
	t.Helper()
	tt, ok := t.(*testing.T)
	if ok {
		return e.events(tt)
	}
	return nil
}

// msgOf returns the message of a message event.
func msgOf(t testing.TB, body map[string]any) map[string]any {
	t.Helper()
	m, ok := body["message"].(map[string]any)
	if !ok {
		t.Fatalf("message event without a message: %v", body)
	}
	return m
}

func numTB(t testing.TB, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

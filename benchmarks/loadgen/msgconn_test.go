package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/protocol"
)

func TestAppendSendReq(t *testing.T) {
	tests := []struct {
		name            string
		toUser, groupID int64
	}{
		{"to user", 42, 0},
		{"to group", 0, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := AppendSendReq(nil, 3, 99, 5, 12, tt.toUser, tt.groupID, 0x0123456789abcdef)
			p, n, err := protocol.Decode(pkt, 1<<20)
			if err != nil || n != len(pkt) {
				t.Fatalf("decode: %v (%d of %d bytes)", err, n, len(pkt))
			}
			if p.Op != protocol.OpSendMsg || p.Seq != 3 {
				t.Fatalf("op %d seq %d", p.Op, p.Seq)
			}
			var req struct {
				ClientMsgID string `json:"client_msg_id"`
				ToUser      int64  `json:"to_user"`
				GroupID     int64  `json:"group_id"`
				Type        int    `json:"type"`
				Content     struct {
					Text string `json:"text"`
				} `json:"content"`
			}
			if err := sonic.Unmarshal(p.Body, &req); err != nil {
				t.Fatalf("body %q: %v", p.Body, err)
			}
			if req.ClientMsgID != "b99_5.12" || req.ToUser != tt.toUser || req.GroupID != tt.groupID || req.Type != 1 || req.Content.Text != "0123456789abcdef" {
				t.Fatalf("got %+v", req)
			}
			run, s, m, err := ParseBenchID([]byte(req.ClientMsgID))
			if err != nil || run != 99 || s != 5 || m != 12 {
				t.Fatalf("ParseBenchID: %d %d %d %v", run, s, m, err)
			}
		})
	}
}

func TestParseBenchIDRejects(t *testing.T) {
	for _, id := range []string{"", "b", "x1_2.3", "b1_2", "b_2.3", "b1_.3", "b1_2.", "b1_-2.3", "b99999999999_1.1", "uuid-like-0000"} {
		if _, _, _, err := ParseBenchID([]byte(id)); err == nil {
			t.Errorf("%q: accepted", id)
		}
	}
}

func TestParseAck(t *testing.T) {
	tests := []struct {
		body, id, code string
		bad            bool
	}{
		{`{"code":0,"client_msg_id":"b1_2.3","msg_id":"9","conversation_id":"p_1_2","seq":4}`, "b1_2.3", "", false},
		{`{"client_msg_id":"b1_2.3","code":0}`, "b1_2.3", "", false},
		{`{"code":"rate_limited","client_msg_id":"b1_2.4","message":"slow down"}`, "b1_2.4", "rate_limited", false},
		{`{"client_msg_id":"b1_2.5"}`, "b1_2.5", "missing", false},
		{`{"code":7,"client_msg_id":"x"}`, "x", "7", false},
		{`not json`, "", "", true},
	}
	for _, tt := range tests {
		id, code, err := ParseAck([]byte(tt.body))
		if (err != nil) != tt.bad {
			t.Errorf("%s: err %v", tt.body, err)
			continue
		}
		if !tt.bad && (string(id) != tt.id || code != tt.code) {
			t.Errorf("%s: id %q code %q", tt.body, id, code)
		}
	}
}

func TestParseMessageEvent(t *testing.T) {
	tests := []struct {
		body, id string
		ok, bad  bool
	}{
		{`{"type":"message","message":{"msg_id":"1","seq":3,"client_msg_id":"b1_0.1","content":{"text":"x"}}}`, "b1_0.1", true, false},
		{`{"message":{"client_msg_id":"b1_0.2"},"type": "message"}`, "b1_0.2", true, false},
		{`{"type":"read","conversation_id":"p_1_2","user_id":1,"seq":3}`, "", false, false},
		{`{"type":"group_changed","group_id":3}`, "", false, false},
		{`{`, "", false, true},
	}
	for _, tt := range tests {
		id, ok, err := ParseMessageEvent([]byte(tt.body))
		if (err != nil) != tt.bad || ok != tt.ok || string(id) != tt.id {
			t.Errorf("%s: id %q ok %v err %v", tt.body, id, ok, err)
		}
	}
}

func FuzzParseServerBodies(f *testing.F) {
	f.Add([]byte(`{"code":0,"client_msg_id":"b1_2.3"}`))
	f.Add([]byte(`{"type":"message","message":{"client_msg_id":"b1_0.1"}}`))
	f.Add([]byte(`{"code":0,"client_msg_id":"`))
	f.Add([]byte(`b1_2.3`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ParseAck(b)
		_, _, _ = ParseMessageEvent(b)
		if run, s, n, err := ParseBenchID(b); err == nil && (s < 0 || n < 0) {
			t.Fatalf("negative parse %d %d %d", run, s, n)
		}
	})
}

func BenchmarkParseMessageEvent(b *testing.B) {
	body := []byte(`{"type":"message","message":{"msg_id":"1873","conversation_id":"p_3_7","seq":12,"sender_id":3,"receiver_id":7,"type":1,"content":{"text":"0123456789abcdef"},"client_msg_id":"b12345_17.9999","status":0,"created_at_ms":1732800000000}}`)
	b.ReportAllocs()
	for b.Loop() {
		id, ok, err := ParseMessageEvent(body)
		if err != nil || !ok {
			b.Fatal(err)
		}
		if _, _, _, err := ParseBenchID(id); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDialMsgRetriesUnavailable: a handshake refused with Op 6 unavailable
// is retried; after dialRetries refusals the error is returned.
func TestDialMsgRetriesUnavailable(t *testing.T) {
	old := dialBackoff
	dialBackoff = time.Millisecond
	t.Cleanup(func() { dialBackoff = old })
	srv := newFakeComet(t, false)
	iss, err := auth.NewIssuer([]byte(testSecret), "goim")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := iss.Issue(7, "d7", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv.refuse.Store(2)
	m, err := DialMsg(context.Background(), srv.addr(), "tcp", tok, "k7", 7, 5*time.Second)
	if err != nil {
		t.Fatalf("after 2 refusals: %v", err)
	}
	m.Close()
	srv.refuse.Store(int32(dialRetries + 1))
	if _, err := DialMsg(context.Background(), srv.addr(), "tcp", tok, "k7", 7, 5*time.Second); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("after %d refusals: err %v, want unavailable", dialRetries+1, err)
	}
}

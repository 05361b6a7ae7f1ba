package store

import (
	"errors"
	"slices"
	"testing"
)

func TestConversationIDs(t *testing.T) {
	if got := PairConversationID(7, 3); got != "p_3_7" {
		t.Fatalf("PairConversationID(7, 3) = %q", got)
	}
	if got := GroupConversationID(12); got != "g_12" {
		t.Fatalf("GroupConversationID(12) = %q", got)
	}
	tests := []struct {
		id   string
		kind ConversationKind
		a, b int64
		ok   bool
	}{
		{"p_3_7", ConversationPair, 3, 7, true},
		{"g_12", ConversationGroup, 12, 0, true},
		{"p_7_3", 0, 0, 0, false},
		{"p_3_3", 0, 0, 0, false},
		{"p_0_3", 0, 0, 0, false},
		{"p_03_7", 0, 0, 0, false},
		{"p_-1_7", 0, 0, 0, false},
		{"p_3", 0, 0, 0, false},
		{"p_3_7_9", 0, 0, 0, false},
		{"g_0", 0, 0, 0, false},
		{"g_+5", 0, 0, 0, false},
		{"g_99999999999999999999", 0, 0, 0, false},
		{"x_1", 0, 0, 0, false},
		{"g_", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tt := range tests {
		kind, a, b, err := ParseConversationID(tt.id)
		if (err == nil) != tt.ok || kind != tt.kind || a != tt.a || b != tt.b {
			t.Errorf("ParseConversationID(%q) = %v %d %d %v", tt.id, kind, a, b, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseConversationID(%q) error %v is not ErrInvalid", tt.id, err)
		}
	}
}

func TestMentionsRoundTrip(t *testing.T) {
	for _, ids := range [][]int64{nil, {1}, {7, 9, 1 << 40}} {
		got, err := DecodeMentions(EncodeMentions(ids))
		if err != nil || !slices.Equal(got, ids) {
			t.Errorf("round trip of %v = %v, %v", ids, got, err)
		}
	}
	if _, err := DecodeMentions("1,x"); err == nil {
		t.Error("DecodeMentions accepted garbage")
	}
}

func TestRecallNoticeContent(t *testing.T) {
	if got := string(RecallNoticeContent(1873, 12)); got != `{"msg_id":"1873","seq":12}` {
		t.Fatalf("RecallNoticeContent = %s", got)
	}
}

// Conversation ids arrive from clients (Sync, Ack, HTTP paths).
func FuzzParseConversationID(f *testing.F) {
	for _, s := range []string{"p_3_7", "g_12", "p_7_3", "g_0", "p__", "p_1_99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		kind, a, b, err := ParseConversationID(id)
		if err != nil {
			return
		}
		var back string
		switch kind {
		case ConversationPair:
			if a <= 0 || b <= a {
				t.Fatalf("%q parsed to pair %d %d", id, a, b)
			}
			back = PairConversationID(a, b)
		case ConversationGroup:
			back = GroupConversationID(a)
		default:
			t.Fatalf("%q parsed to kind %d", id, kind)
		}
		if back != id {
			t.Fatalf("%q parsed and formatted back as %q", id, back)
		}
	})
}

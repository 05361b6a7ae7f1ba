package suite

import (
	"strings"
	"testing"
	"time"
)

func sampleMsgResults() []*Result {
	st := MsgStats{Mode: ModeClosed, InFlight: 4, Senders: 500, Receivers: 1, Sent: 1000, Acked: 1000, Expected: 1000, Delivered: 1000,
		SentPerSec: 9000, AckedPerSec: 8900, DeliveredPerSec: 8800, AckLatency: Latency{Count: 1000, P50US: 1500, P99US: 9000, P999US: 20000},
		E2ELatency: Latency{Count: 1000, P50US: 1700, P99US: 9500, P999US: 21000}, ServerCPUPercent: 120, DriverCPUPercent: 60, CommitBatchMean: 30}
	open := st
	open.Mode, open.InFlight, open.Rate, open.SentPerSec = ModeOpen, 0, 25000, 12000
	t0 := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	m := Machine{CPUModel: "cpu", Cores: 2}
	return []*Result{
		{Schema: ResultSchema, Scenario: "chat", StartedAt: t0, Machine: m, Chat: &ChatResult{Config: ChatConfig{Pairs: 500}, Stats: st}},
		{Schema: ResultSchema, Scenario: "chat", StartedAt: t0, Machine: m, Chat: &ChatResult{Config: ChatConfig{Pairs: 500, Rate: 25000}, Stats: open}},
		{Schema: ResultSchema, Scenario: "group", StartedAt: t0, Machine: m, Group: &GroupResult{Config: GroupConfig{Members: 500}, Stats: st}},
		{Schema: ResultSchema, Scenario: "history", StartedAt: t0, Machine: m, History: &HistoryResult{Config: HistoryConfig{Conversations: 100, Messages: 1000, Hot: 10, HotShare: 0.9, Readers: 32},
			Reads: 5000, ReadsPerSec: 500, Latency: Latency{P50US: 3000, P99US: 12000}, CacheHitRatio: -1}},
	}
}

func TestRenderMessaging(t *testing.T) {
	md := RenderMarkdown(sampleMsgResults())
	for _, want := range []string{
		"### chat and group", "| chat 500 pairs | closed W=4 | 500 | 9000 | 8900 | 8800 |",
		"| open 25000/s (12000) |", "| group 500 members |",
		"### history", "| 100 x 1000 | 10 / 90% | 32 | 500 | 3.0 / 12.0 / 0.000 |", "| n/a |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var b strings.Builder
	for _, r := range sampleMsgResults() {
		PrintHuman(&b, r)
	}
	for _, want := range []string{"chat: 500 pairs", "group: 500 members", "history: 100 conversations x 1000 messages", "e2e p99 ms"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("human output lacks %q", want)
		}
	}
}

func TestMsgResultRoundTrip(t *testing.T) {
	for _, r := range sampleMsgResults() {
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseResult(b)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Chat != nil:
			if got.Chat == nil || got.Chat.Stats.Sent != r.Chat.Stats.Sent || got.Chat.Stats.E2ELatency != r.Chat.Stats.E2ELatency || got.Chat.Config.Pairs != r.Chat.Config.Pairs {
				t.Errorf("chat round trip: %+v", got.Chat)
			}
		case r.Group != nil:
			if got.Group == nil || got.Group.Stats.Delivered != r.Group.Stats.Delivered {
				t.Errorf("group round trip: %+v", got.Group)
			}
		case r.History != nil:
			if got.History == nil || got.History.Reads != r.History.Reads || got.History.CacheHitRatio != -1 {
				t.Errorf("history round trip: %+v", got.History)
			}
		}
	}
}

func TestMsgStatsCheck(t *testing.T) {
	tests := []struct {
		name string
		s    MsgStats
		want []string
	}{
		{"clean", MsgStats{Sent: 10, Acked: 10, Delivered: 10}, nil},
		{"lost", MsgStats{Lost: 2}, []string{"2 acked deliveries never arrived"}},
		{"unacked", MsgStats{Unacked: 3}, []string{"3 messages sent but never answered"}},
		{"refused", MsgStats{Refused: 4, RefusedCodes: map[string]int64{"rate_limited": 4}}, []string{"4 refused; answer and write anomalies: rate_limited=4"}},
		{"closed", MsgStats{ClosedByServer: 1, Disconnects: map[string]int64{"slow_consumer": 1}}, []string{"1 connections closed by the server (Op 6: slow_consumer=1)"}},
	}
	for _, tt := range tests {
		got := tt.s.Check("x")
		if len(got) != len(tt.want) {
			t.Errorf("%s: %q", tt.name, got)
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], tt.want[i]) {
				t.Errorf("%s: %q lacks %q", tt.name, got[i], tt.want[i])
			}
		}
	}
}

func TestCacheHitRatio(t *testing.T) {
	tests := []struct {
		m    map[string]float64
		want float64
	}{
		{nil, -1},
		{map[string]float64{"goim_relcache_lookups_total": 5}, -1},
		{map[string]float64{`goim_logic_message_cache_total{result="hit"}`: 3, `goim_logic_message_cache_total{result="miss"}`: 1}, 0.75},
		{map[string]float64{"goim_history_cache_hits_total": 1, "goim_history_cache_misses_total": 1}, 0.5},
		{map[string]float64{"goim_msgcache_lookups_total": 4, `goim_msgcache_lookups_total{result="hit"}`: 3, `goim_msgcache_lookups_total{result="miss"}`: 1}, 0.75},
	}
	for _, tt := range tests {
		if got := cacheHitRatio(tt.m); got != tt.want {
			t.Errorf("%v: %v, want %v", tt.m, got, tt.want)
		}
	}
}

func TestConversationID(t *testing.T) {
	if a, b := ConversationID(7, 3), ConversationID(3, 7); a != "p_3_7" || b != a {
		t.Fatalf("%s %s", a, b)
	}
}

package suite

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goimdev/goim/benchmarks/loadgen"
)

func sampleResults() []*Result {
	conns := NewResult("conns", []string{"goim-bench", "conns", "-n", "15000"})
	conns.StartedAt = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	conns.FinishedAt = conns.StartedAt.Add(time.Minute)
	conns.Server = ServerInfo{Mode: "spawned", Binary: "/x/bin/goim", Args: []string{"standalone", "--data-dir", "/tmp/d"}}
	conns.Conns = &ConnsResult{
		Config: ConnsConfig{N: 15000, Transport: "tcp", Rate: 3000, Settle: 20 * time.Second, Samples: 5, Workers: 1},
		Runs: []ConnsRun{
			{Requested: 15000, Connected: 15000, ConnectRate: 2990, RSSPerConnBytes: Spread{Min: 4000, Median: 4100, Max: 4200, N: 5},
				IdleCPUPercent: 2.5, Goroutines: 40, Errors: map[string]int64{"dial: timeout": 1},
				Stop: &StopReport{Seconds: 1.5, Exit: "0"}},
			{Requested: 15000, Connected: 15000, ConnectRate: 3000, RSSPerConnBytes: Spread{Min: 4300, Median: 4400, Max: 4500, N: 5},
				IdleCPUPercent: 3.5, Goroutines: 42},
		},
	}
	conns.Conns.Summarize()
	conns.Notef("run %d: %s", 1, "something odd")

	room := NewResult("room", []string{"goim-bench", "room"})
	room.StartedAt = time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	room.Room = &RoomResult{
		Config:    RoomConfig{N: 15000, Transport: "tcp", Rates: []float64{10, 100}, Duration: 10 * time.Second, Op: 1000, RoomType: "live", Room: "bench"},
		Connected: 15000,
		Steps: []RoomStep{
			{Rate: 10, PushesSent: 100, AchievedRate: 10, Receivers: 15000, Expected: 1_500_000, Delivered: 1_500_000, DeliveriesPerSec: 149000,
				Latency: loadgen.LatencySummary{Count: 1_500_000, P50US: 850, P99US: 4200, P999US: 9000, MaxUS: 12000}, ServerCPUPercent: 40},
			{Rate: 100, PushesSent: 1000, AchievedRate: 99.9, Receivers: 15000, Expected: 15_000_000, Delivered: 14_999_000, Loss: 1000,
				Disconnects: map[string]int64{"slow_consumer": 1}, ServerCPUPercent: -1},
		},
	}
	return []*Result{conns, room}
}

func TestResultRoundTrip(t *testing.T) {
	for _, r := range sampleResults() {
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseResult(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, r)
		}
	}
	if _, err := ParseResult([]byte(`{"schema": 99}`)); err == nil {
		t.Fatal("unknown schema accepted")
	}
}

func TestSaveAndLoad(t *testing.T) {
	dir := t.TempDir()
	rs := sampleResults()
	for i := len(rs) - 1; i >= 0; i-- { // saved newest first
		path, err := rs[i].Save(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(path, rs[i].Scenario+"-"+rs[i].StartedAt.Format("20060102T150405Z")+".json") {
			t.Fatalf("file name %s", path)
		}
	}
	got, err := LoadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Scenario != "conns" || got[1].Scenario != "room" {
		t.Fatalf("loaded %d results, not oldest first", len(got))
	}
}

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{3}, Spread{3, 3, 3, 1}},
		{[]float64{5, 1, 3}, Spread{1, 3, 5, 3}},
		{[]float64{4, 1, 3, 2}, Spread{1, 2.5, 4, 4}},
	}
	for _, tt := range tests {
		if got := SpreadOf(tt.in); got != tt.want {
			t.Errorf("SpreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestConnsSummaryAndChecks(t *testing.T) {
	c := sampleResults()[0].Conns
	s := c.Summary
	if s.RSSPerConnBytes != (Spread{4100, 4250, 4400, 2}) || s.ConnectRate.Median != 2995 || s.IdleCPUPercent.Max != 3.5 {
		t.Fatalf("summary %+v", s)
	}
	if notes := c.Runs[0].Check(); len(notes) != 0 {
		t.Fatalf("clean run has notes %v", notes)
	}
	bad := ConnsRun{Requested: 10, Connected: 8, Failed: 2, ClosedByServer: 1, HeartbeatsSent: 100, HeartbeatReplies: 10,
		Stop: &StopReport{Exit: "signal killed", Killed: true}}
	if notes := bad.Check(); len(notes) != 4 {
		t.Fatalf("bad run notes %q", notes)
	}
	room := sampleResults()[1].Room
	room.WarmupDelivered = 15000
	if notes := room.Check(); len(notes) != 1 || !strings.Contains(notes[0], "1000 of 15000000 deliveries missing") {
		t.Fatalf("room notes %q", notes)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
process_resident_memory_bytes 1.2345e+07
goim_comet_connections{transport="tcp"} 10
goim_comet_connections{transport="ws"} 5
goim_comet_push_seconds_bucket{le="0.1"} 3
goim_comet_push_seconds_sum 1.5
goim_comet_push_seconds_count 3
go_gc_duration_seconds{quantile="0.5"} 0.001
http_requests_total 7
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"go_goroutines": 42, "process_resident_memory_bytes": 12345000,
		"goim_comet_connections": 15, "goim_comet_push_seconds_sum": 1.5, "goim_comet_push_seconds_count": 3,
		`goim_comet_connections{transport="tcp"}`: 10, `goim_comet_connections{transport="ws"}`: 5,
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %v\nwant %v", m, want)
	}
}

func TestRenderAndReplace(t *testing.T) {
	md := RenderMarkdown(sampleResults())
	for _, want := range []string{
		"| 2026-03-01 10:00 | M1 | tcp | 15000 | 2 | 4.00 / 4.15 / 4.30 | 2995 | 3.0 | 0.0 | 41 | 1 |",
		"| 2026-03-01 11:00 | M1 | tcp | 15000 | 10 | 100 | 149000 | 1500000 | 0 | 0.850 | 4.2 | 9.0 | 12.0 | 40.0 | 0.0 | 0.0 | 0.0 | 0 | - |",
		"| n/a | 0.0 | 0.0 | 0.0 | 0 | slow_consumer=1 |",
		"| 15000 | 100 | 1000 |",
		"- M1: ",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "spread over runs") {
		t.Fatal("a spread table for single runs")
	}
	two := append(sampleResults(), sampleResults()[1])
	if md := RenderMarkdown(two); !strings.Contains(md, "| M1 | tcp | 15000 | 10 | 2 | 149000 / 149000 / 149000 | 0.850 / 0.850 / 0.850 | 4.2 / 4.2 / 4.2 | 0 |") ||
		!strings.Contains(md, "| M1 | tcp | 15000 | 100 | 2 |") {
		t.Errorf("spread table missing:\n%s", md)
	}
	doc := "# Bench\nintro\n" + ReadmeBegin + "\nold tables\n" + ReadmeEnd + "\ntail\n"
	out, err := ReplaceBetweenMarkers([]byte(doc), "NEW")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "# Bench\nintro\n"+ReadmeBegin+"\nNEW\n"+ReadmeEnd+"\ntail\n" {
		t.Fatalf("replaced:\n%s", out)
	}
	if _, err := ReplaceBetweenMarkers([]byte("no markers"), "x"); err == nil {
		t.Fatal("missing markers accepted")
	}
}

func TestMetricsDelta(t *testing.T) {
	before := map[string]float64{"goim_comet_closes_total": 2, `goim_comet_closes_total{code="eof"}`: 2, "goim_comet_connections": 9, "go_goroutines": 5}
	after := map[string]float64{"goim_comet_closes_total": 5, `goim_comet_closes_total{code="eof"}`: 2, `goim_comet_closes_total{code="slow_consumer"}`: 3,
		"goim_comet_connections": 7, "go_goroutines": 9}
	want := map[string]float64{"goim_comet_closes_total": 3, `goim_comet_closes_total{code="slow_consumer"}`: 3, "goim_comet_connections": 7}
	if got := metricsDelta(before, after); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestClusterSuffix(t *testing.T) {
	for _, c := range []struct {
		info ServerInfo
		want string
	}{
		{ServerInfo{Mode: "spawned", TCPAddr: "127.0.0.1:1"}, ""},
		{ServerInfo{Mode: "external", TCPAddr: "127.0.0.1:1"}, ""},
		{ServerInfo{Mode: "external", TCPAddr: "a:1,b:2"}, ", cluster of 2 comets"},
		{ServerInfo{Mode: "external", TCPAddr: "a:1", WSAddr: "a:3,b:4,c:5"}, ", cluster of 3 comets"},
	} {
		r := &Result{Server: c.info}
		if got := r.ClusterSuffix(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.info, got, c.want)
		}
	}
}

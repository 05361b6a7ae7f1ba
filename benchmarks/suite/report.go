package suite

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// README markers between which `goim-bench report` writes the tables.
const (
	ReadmeBegin = "<!-- goim-bench:results:begin -->"
	ReadmeEnd   = "<!-- goim-bench:results:end -->"
)

func kib(b float64) string { return fmt.Sprintf("%.2f", b/1024) }
func mib(b float64) string { return fmt.Sprintf("%.1f", b/(1<<20)) }
func ms(us float64) string {
	if us < 1000 {
		return fmt.Sprintf("%.3f", us/1000)
	}
	return fmt.Sprintf("%.1f", us/1000)
}
func pct(p float64) string {
	if p < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", p)
}

// codes renders a code-count map compactly ("slow_consumer=3 replaced=1").
func codes(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// PrintHuman writes the human tables of a result to w.
func PrintHuman(w io.Writer, r *Result) {
	fmt.Fprintf(w, "\n%s — %s\nmachine: %s\nserver: %s %s\n", r.Scenario, r.StartedAt.Format(time.RFC3339), r.Machine, r.Server.Mode, r.Server.Version)
	if r.Interrupted {
		fmt.Fprintln(w, "INTERRUPTED: partial result (stopped by a signal)")
	}
	switch {
	case r.Conns != nil:
		printConns(w, r.Conns)
	case r.Room != nil:
		printRoom(w, r.Room)
	case r.Chat != nil:
		printChat(w, r.Chat)
	case r.Group != nil:
		printGroup(w, r.Group)
	case r.History != nil:
		printHistory(w, r.History)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "NOTE: %s\n", n)
	}
}

func printConns(w io.Writer, c *ConnsResult) {
	fmt.Fprintf(w, "conns: N=%d %s, %d workers, connect rate %g/s, settle %v\n\n", c.Config.N, c.Config.Transport, c.Config.Workers, c.Config.Rate, c.Config.Settle)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tconnected\tfailed\tconnect/s\thandshake p99 ms\tbaseline MiB\tRSS MiB (median)\tRSS/conn KiB min\tmedian\tmax\tgoroutines\tidle CPU %\tworkers CPU %\tirq CPU %\tother CPU %\tload\theartbeat s\theartbeats\treplies\tclosed\tstop s\texit\t")
	for i, run := range c.Runs {
		stop, exit := "-", "-"
		if run.Stop != nil {
			stop, exit = fmt.Sprintf("%.1f", run.Stop.Seconds), run.Stop.Exit
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%.1f\t%g\t%d\t%d\t%d\t%s\t%s\t\n",
			i+1, run.Connected, run.Failed, run.ConnectRate, ms(run.Handshake.P99US), mib(run.BaselineRSSBytes), mib(run.RSSBytes.Median),
			kib(run.RSSPerConnBytes.Min), kib(run.RSSPerConnBytes.Median), kib(run.RSSPerConnBytes.Max),
			run.Goroutines, pct(run.IdleCPUPercent), pct(run.WorkerCPUPercent), pct(run.IRQCPUPercent), pct(run.OtherCPUPercent), run.LoadAvg, run.HeartbeatSeconds, run.HeartbeatsSent, run.HeartbeatReplies, run.ClosedByServer, stop, exit)
	}
	tw.Flush()
	for i, run := range c.Runs {
		if run.HoldSeconds > 0 {
			fmt.Fprintf(w, "run %d hold: %.0fs, %d dropped by the server, %d open at the end, %d heartbeats / %d replies, server RSS %s MiB\n",
				i+1, run.HoldSeconds, run.HoldDrops, run.HoldOpen, run.HoldHeartbeats, run.HoldHeartbeatReplies, mib(float64(run.HoldRSSBytes)))
		}
		if len(run.RSSByPIDBytes) > 0 {
			parts := make([]string, len(run.RSSByPIDBytes))
			for j, b := range run.RSSByPIDBytes {
				pid := 0
				if j < len(c.Config.PIDs) {
					pid = c.Config.PIDs[j]
				}
				parts[j] = fmt.Sprintf("%d: %s", pid, mib(float64(b)))
			}
			fmt.Fprintf(w, "run %d RSS MiB by server process: %s\n", i+1, strings.Join(parts, ", "))
		}
	}
	s := c.Summary
	fmt.Fprintf(w, "\nover %d runs: RSS/conn %s / %s / %s KiB (min/median/max of run medians), connect %.0f/s median, idle CPU %s%% median\n",
		len(c.Runs), kib(s.RSSPerConnBytes.Min), kib(s.RSSPerConnBytes.Median), kib(s.RSSPerConnBytes.Max), s.ConnectRate.Median, pct(s.IdleCPUPercent.Median))
}

func printRoom(w io.Writer, r *RoomResult) {
	fmt.Fprintf(w, "room: N=%d %s in %s, %d workers, %v per rate, payload %d B; %d connected in %.1fs, warm-up reached %d\n\n",
		r.Config.N, r.Config.Transport, r.Config.RoomKey(), r.Config.Workers, r.Config.Duration, r.Config.PayloadSize, r.Connected, r.ConnectSeconds, r.WarmupDelivered)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate/s\tsent\tachieved/s\treceivers\texpected\tdelivered\tloss\tdeliveries/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tpush p99 ms\tserver CPU %\tworkers CPU %\tirq CPU %\tother CPU %\tOp 6\tclosed\t")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "%g\t%d\t%.1f\t%d\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n",
			s.Rate, s.PushesSent, s.AchievedRate, s.Receivers, s.Expected, s.Delivered, s.Loss, s.DeliveriesPerSec,
			ms(s.Latency.P50US), ms(s.Latency.P99US), ms(s.Latency.P999US), ms(s.Latency.MaxUS), ms(s.PushHTTP.P99US),
			pct(s.ServerCPUPercent), pct(s.WorkerCPUPercent), pct(s.IRQCPUPercent), pct(s.OtherCPUPercent), codes(s.Disconnects), s.ClosedByServer)
	}
	tw.Flush()
}

// RenderMarkdown renders the tables of results (oldest first) for the README.
func RenderMarkdown(results []*Result) string {
	var b strings.Builder
	machines := map[string]string{}
	var order []string
	label := func(m Machine) string {
		k := m.String()
		if l, ok := machines[k]; ok {
			return l
		}
		l := fmt.Sprintf("M%d", len(machines)+1)
		machines[k] = l
		order = append(order, k)
		return l
	}
	var conns, room strings.Builder
	for _, r := range results {
		date := r.StartedAt.UTC().Format("2006-01-02 15:04")
		m := label(r.Machine)
		switch {
		case r.Conns != nil:
			c := r.Conns
			s := c.Summary
			fmt.Fprintf(&conns, "| %s | %s | %s | %d | %d | %s / %s / %s | %.0f | %s | %s | %.0f | %d |\n",
				date, m, c.Config.Transport+r.ClusterSuffix(), c.Config.N, len(c.Runs),
				kib(s.RSSPerConnBytes.Min), kib(s.RSSPerConnBytes.Median), kib(s.RSSPerConnBytes.Max),
				s.ConnectRate.Median, pct(s.IdleCPUPercent.Median), pct(s.OtherCPUPercent.Median), s.Goroutines.Median, len(r.Notes))
		case r.Room != nil:
			for _, s := range r.Room.Steps {
				rate := fmt.Sprintf("%g", s.Rate)
				if s.AchievedRate < 0.95*s.Rate {
					rate += fmt.Sprintf(" (%.0f)", s.AchievedRate)
				}
				fmt.Fprintf(&room, "| %s | %s | %s | %d | %s | %d | %.0f | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |\n",
					date, m, r.Room.Config.Transport, r.Room.Receivers(), rate, s.PushesSent, s.DeliveriesPerSec,
					s.Expected, s.Loss, ms(s.Latency.P50US), ms(s.Latency.P99US), ms(s.Latency.P999US), ms(s.Latency.MaxUS),
					pct(s.ServerCPUPercent), pct(s.WorkerCPUPercent), pct(s.IRQCPUPercent), pct(s.OtherCPUPercent), s.ClosedByServer, codes(s.Disconnects))
			}
		}
	}
	b.WriteString("_Generated by `goim-bench report` from `benchmarks/results/*.json`; do not edit by hand._\n\n")
	if conns.Len() > 0 {
		b.WriteString("### conns: server memory per idle authenticated connection\n\n")
		b.WriteString("| date (UTC) | machine | transport | N | runs | RSS/conn KiB min / median / max | connect/s | idle server CPU % | other CPU % | goroutines | notes |\n")
		b.WriteString("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		b.WriteString(conns.String())
		b.WriteString("\nRSS/conn is (server RSS after settling − RSS before connecting) / connections, the median RSS sample of each run; min / median / max are over runs. Idle CPU is the server's utime+stime over the settle window, in % of one core; other CPU is the rest of the machine's busy CPU over the window (other processes, interrupts excluded): a busy machine slows the connect rate.\n\n")
	}
	if room.Len() > 0 {
		b.WriteString("### room: broadcast to every connection of one room\n\n")
		b.WriteString("| date (UTC) | machine | transport | receivers | pushes/s | pushes | deliveries/s | expected | loss | p50 ms | p99 ms | p99.9 ms | max ms | server CPU % | workers CPU % | irq CPU % | other CPU % | closed by server | Op 6 received |\n")
		b.WriteString("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
		b.WriteString(room.String())
		b.WriteString("\nLatency is push-to-receive: the pusher's timestamp in the body, taken just before the HTTP request, to the worker's read (one machine clock). Deliveries/s = deliveries / (last delivery − first push). CPU is in % of one core over the step (pushing and draining); the workers share the machine with the server; irq CPU is interrupt time charged to no process (loopback TCP delivery lands there); other CPU is the rest of the machine's busy CPU (other processes). A rate in the form `1000 (510)` means the pusher reached only 510 pushes/s (the push API answered more slowly than the rate needs).\n\n")
	}
	if sum := roomSummary(results, label); sum != "" {
		b.WriteString("### room: spread over runs\n\n")
		b.WriteString("| machine | transport | receivers | pushes/s | runs | deliveries/s min / median / max | p50 ms min / median / max | p99 ms min / median / max | runs with loss |\n")
		b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
		b.WriteString(sum)
		b.WriteString("\n")
	}
	b.WriteString(renderMessaging(results, label))
	if len(order) > 0 {
		b.WriteString("Machines:\n\n")
		for _, k := range order {
			fmt.Fprintf(&b, "- %s: %s\n", machines[k], k)
		}
	}
	return b.String()
}

// Receivers is the number of connections of the first step (the room size).
func (r *RoomResult) Receivers() int64 {
	if len(r.Steps) > 0 {
		return r.Steps[0].Receivers
	}
	return r.Connected
}

// UpdateReadme replaces the text between ReadmeBegin and ReadmeEnd in the
// file at path with body.
func UpdateReadme(path, body string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := ReplaceBetweenMarkers(b, body)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// ReplaceBetweenMarkers returns doc with the text between the markers
// replaced by body.
func ReplaceBetweenMarkers(doc []byte, body string) ([]byte, error) {
	i := bytes.Index(doc, []byte(ReadmeBegin))
	j := bytes.Index(doc, []byte(ReadmeEnd))
	if i < 0 || j < 0 || j < i {
		return nil, errors.New("results markers not found")
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(ReadmeBegin)])
	out.WriteString("\n")
	out.WriteString(body)
	if !strings.HasSuffix(body, "\n") {
		out.WriteString("\n")
	}
	out.Write(doc[j:])
	return out.Bytes(), nil
}

// roomSummary spreads the room steps of results over runs with the same
// machine, transport, room size and rate (one table row each).
func roomSummary(results []*Result, label func(Machine) string) string {
	type key struct {
		machine, transport string
		receivers          int64
		rate               float64
	}
	type acc struct {
		dps, p50, p99 []float64
		lossy         int
	}
	groups := map[key]*acc{}
	var keys []key
	for _, r := range results {
		if r.Room == nil {
			continue
		}
		for _, s := range r.Room.Steps {
			k := key{label(r.Machine), r.Room.Config.Transport, r.Room.Receivers(), s.Rate}
			a := groups[k]
			if a == nil {
				a = &acc{}
				groups[k] = a
				keys = append(keys, k)
			}
			a.dps = append(a.dps, s.DeliveriesPerSec)
			a.p50 = append(a.p50, s.Latency.P50US)
			a.p99 = append(a.p99, s.Latency.P99US)
			if s.Loss != 0 {
				a.lossy++
			}
		}
	}
	var b strings.Builder
	for _, k := range keys {
		a := groups[k]
		if len(a.dps) < 2 {
			continue
		}
		d, p50, p99 := SpreadOf(a.dps), SpreadOf(a.p50), SpreadOf(a.p99)
		fmt.Fprintf(&b, "| %s | %s | %d | %g | %d | %.0f / %.0f / %.0f | %s / %s / %s | %s / %s / %s | %d |\n",
			k.machine, k.transport, k.receivers, k.rate, len(a.dps), d.Min, d.Median, d.Max,
			ms(p50.Min), ms(p50.Median), ms(p50.Max), ms(p99.Min), ms(p99.Median), ms(p99.Max), a.lossy)
	}
	return b.String()
}

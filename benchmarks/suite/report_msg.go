package suite

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Tables of the messaging scenarios (chat, group, history).

func modeLabel(s MsgStats) string {
	if s.Mode == ModeOpen {
		rate := fmt.Sprintf("open %g/s", s.Rate)
		if s.SentPerSec < 0.95*s.Rate {
			rate += fmt.Sprintf(" (%.0f)", s.SentPerSec)
		}
		return rate
	}
	return fmt.Sprintf("closed W=%d", s.InFlight)
}

func printMsgStats(w io.Writer, s MsgStats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tsenders\tsent\tsent/s\tacked\tacked/s\trefused\tunacked\texpected\tdelivered\tdelivered/s\tlost\tack p50 ms\tack p99 ms\tack p99.9 ms\te2e p50 ms\te2e p99 ms\te2e p99.9 ms\te2e max ms\tbatch\tserver CPU %\tdriver CPU %\tirq CPU %\tother CPU %\tclosed\t")
	fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%d\t%.0f\t%d\t%d\t%d\t%d\t%.0f\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%d\t\n",
		modeLabel(s), s.Senders, s.Sent, s.SentPerSec, s.Acked, s.AckedPerSec, s.Refused, s.Unacked, s.Expected, s.Delivered, s.DeliveredPerSec, s.Lost,
		ms(s.AckLatency.P50US), ms(s.AckLatency.P99US), ms(s.AckLatency.P999US),
		ms(s.E2ELatency.P50US), ms(s.E2ELatency.P99US), ms(s.E2ELatency.P999US), ms(s.E2ELatency.MaxUS), s.CommitBatchMean,
		pct(s.ServerCPUPercent), pct(s.DriverCPUPercent), pct(s.IRQCPUPercent), pct(s.OtherCPUPercent), s.ClosedByServer)
	tw.Flush()
}

func printChat(w io.Writer, c *ChatResult) {
	fmt.Fprintf(w, "chat: %d pairs (%d %s connections, connected in %.1fs), %v\n\n", c.Config.Pairs, c.Connected, c.Config.Transport, c.ConnectSeconds, c.Config.Duration)
	printMsgStats(w, c.Stats)
	if c.Profile != "" {
		fmt.Fprintf(w, "\nserver CPU profile (perf):\n%s\n", c.Profile)
	}
}

func printGroup(w io.Writer, g *GroupResult) {
	fmt.Fprintf(w, "group: %d members all online (%s), %d senders, group %d, %v\n\n", g.Config.Members, g.Config.Transport, g.Config.Senders, g.GroupID, g.Config.Duration)
	printMsgStats(w, g.Stats)
}

func printHistory(w io.Writer, h *HistoryResult) {
	c := h.Config
	fmt.Fprintf(w, "history: %d conversations x %d messages (seeded at %.0f msgs/s), %d readers for %v, pages of %d, %.0f%% of reads on the latest page of %d hot conversations\n\n",
		c.Conversations, c.Messages, h.Seed.AckedPerSec, c.Readers, c.Duration, c.PageSize, c.HotShare*100, c.Hot)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "reads\treads/s\terrors\tshort\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\thot p99 ms\tcold p99 ms\tcache hit\tserver CPU %\tdriver CPU %\t")
	fmt.Fprintf(tw, "%d\t%.0f\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", h.Reads, h.ReadsPerSec, codes(h.ReadErrors), h.ShortPages,
		ms(h.Latency.P50US), ms(h.Latency.P99US), ms(h.Latency.P999US), ms(h.Latency.MaxUS), ms(h.HotLatency.P99US), ms(h.ColdLatency.P99US),
		ratio(h.CacheHitRatio), pct(h.ServerCPUPercent), pct(h.DriverCPUPercent))
	tw.Flush()
}

func ratio(r float64) string {
	if r < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", r)
}

func msgRow(b *strings.Builder, date, m, what string, s MsgStats) {
	fmt.Fprintf(b, "| %s | %s | %s | %s | %d | %.0f | %.0f | %.0f | %d | %d | %d | %s / %s / %s | %s / %s / %s | %.1f | %s | %s | %s |\n",
		date, m, what, modeLabel(s), s.Senders, s.SentPerSec, s.AckedPerSec, s.DeliveredPerSec, s.Lost, s.Unacked, s.Refused,
		ms(s.AckLatency.P50US), ms(s.AckLatency.P99US), ms(s.AckLatency.P999US),
		ms(s.E2ELatency.P50US), ms(s.E2ELatency.P99US), ms(s.E2ELatency.P999US), s.CommitBatchMean,
		pct(s.ServerCPUPercent), pct(s.DriverCPUPercent), pct(s.OtherCPUPercent))
}

// renderMessaging renders the chat/group and history tables.
func renderMessaging(results []*Result, label func(Machine) string) string {
	var msgs, hist strings.Builder
	for _, r := range results {
		date := r.StartedAt.UTC().Format("2006-01-02 15:04")
		switch {
		case r.Chat != nil:
			msgRow(&msgs, date, label(r.Machine), fmt.Sprintf("chat %d pairs%s", r.Chat.Config.Pairs, r.ClusterSuffix()), r.Chat.Stats)
		case r.Group != nil:
			msgRow(&msgs, date, label(r.Machine), fmt.Sprintf("group %d members%s", r.Group.Config.Members, r.ClusterSuffix()), r.Group.Stats)
		case r.History != nil:
			h := r.History
			fmt.Fprintf(&hist, "| %s | %s | %d x %d | %d / %.0f%% | %d | %.0f | %s / %s / %s | %s | %s | %s | %d | %s | %s |\n",
				date, label(r.Machine), h.Config.Conversations, h.Config.Messages, h.Config.Hot, h.Config.HotShare*100, h.Config.Readers, h.ReadsPerSec,
				ms(h.Latency.P50US), ms(h.Latency.P99US), ms(h.Latency.P999US), ms(h.HotLatency.P99US), ms(h.ColdLatency.P99US),
				codes(h.ReadErrors), h.ShortPages, ratio(h.CacheHitRatio), pct(h.ServerCPUPercent))
		}
	}
	var b strings.Builder
	if msgs.Len() > 0 {
		b.WriteString("### chat and group: send → SendAck → receivers' message events\n\n")
		b.WriteString("| date (UTC) | machine | scenario | mode | senders | sent/s | acked/s | delivered/s | lost | unacked | refused | ack p50 / p99 / p99.9 ms | e2e p50 / p99 / p99.9 ms | msgs per commit | server CPU % | driver CPU % | other CPU % |\n")
		b.WriteString("|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		b.WriteString(msgs.String())
		b.WriteString("\nAcked/s = messages answered with code 0 (durable with their seq) / (last ack − first send); delivered/s = Op 22 message events received / (last event − first send), summed over receivers (a group message counts once per online member other than the sender). Lost = acked deliveries that never arrived; unacked = sent and never answered. Ack latency is send → SendAck at the sender, e2e is send → the receiver's event (one machine clock); open loop measures from each message's scheduled send time. Closed W=k: k messages in flight per sender connection. The driver holds every client connection on the same 2 cores as the server.\n\n")
	}
	if hist.Len() > 0 {
		b.WriteString("### history: GET /api/v1/conversations/{id}/messages?before_seq=&limit=50\n\n")
		b.WriteString("| date (UTC) | machine | conversations x messages | hot conversations / share of reads | readers | reads/s | p50 / p99 / p99.9 ms | hot p99 ms | cold p99 ms | errors | short pages | cache hit ratio | server CPU % |\n")
		b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|\n")
		b.WriteString(hist.String())
		b.WriteString("\nHot reads fetch the latest page of a hot conversation; cold reads a random page of any conversation. Cache hit ratio is n/a when the server exposes no message-cache metric (the one-process server reads every page from SQLite).\n\n")
	}
	return b.String()
}

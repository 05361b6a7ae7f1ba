package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goimdev/goim/benchmarks/chart"
	"github.com/goimdev/goim/benchmarks/suite"
)

func runReport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("results", "benchmarks/results", "directory of the result files")
	readme := fs.String("readme", "benchmarks/README.md", "file whose results section is rewritten")
	print := fs.Bool("stdout", false, "print the tables instead of rewriting the README")
	charts := fs.String("charts", "", "directory the SVG charts are written to (default: the -results directory; \"-\": no charts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	results, err := suite.LoadResults(*dir)
	if err != nil {
		return err
	}
	md := suite.RenderMarkdown(results)
	if *charts != "-" {
		chartDir := cmp.Or(*charts, *dir)
		written, err := writeCharts(chartDir, buildCharts(results))
		if err != nil {
			return err
		}
		md += chartsMarkdown(filepath.Dir(*readme), written)
	}
	if *print {
		_, err := io.WriteString(stdout, md)
		return err
	}
	if err := suite.UpdateReadme(*readme, md); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d results rendered\n", *readme, len(results))
	return nil
}

// namedChart is a chart and the file it is written to.
type namedChart struct {
	// File is the SVG file name (no directory).
	File string
	// Caption is the chart's alt text in the README.
	Caption string
	Chart   chart.Chart
	// path is where it was written (set by writeCharts).
	path string
}

// percentiles are the latency series of the latency charts.
var percentiles = []struct {
	name string
	of   func(suite.Latency) float64
}{
	{"p50", func(l suite.Latency) float64 { return l.P50US }},
	{"p99", func(l suite.Latency) float64 { return l.P99US }},
	{"p99.9", func(l suite.Latency) float64 { return l.P999US }},
}

// latencySample is one measurement at a requested rate.
type latencySample struct {
	rate     float64 // requested
	achieved float64
	lat      suite.Latency
}

// latencyChart draws p50/p99/p99.9 (ms) against rate: the samples are
// grouped by requested rate; a group is drawn at its median achieved rate
// with the median of each percentile.
func latencyChart(title, xLabel string, samples []latencySample) chart.Chart {
	c := chart.Chart{Title: title, XLabel: xLabel, YLabel: "latency, ms", XLog: true, YLog: true}
	byRate := map[float64][]latencySample{}
	var rates []float64
	for _, s := range samples {
		if _, ok := byRate[s.rate]; !ok {
			rates = append(rates, s.rate)
		}
		byRate[s.rate] = append(byRate[s.rate], s)
	}
	slices.Sort(rates)
	for _, p := range percentiles {
		ser := chart.Series{Name: p.name}
		for _, r := range rates {
			var xs, ys []float64
			for _, s := range byRate[r] {
				if s.lat.Count == 0 {
					continue
				}
				xs, ys = append(xs, cmp.Or(s.achieved, s.rate)), append(ys, p.of(s.lat)/1000)
			}
			if len(xs) > 0 {
				ser.Points = append(ser.Points, chart.Point{X: suite.SpreadOf(xs).Median, Y: suite.SpreadOf(ys).Median})
			}
		}
		c.Series = append(c.Series, ser)
	}
	return c
}

// buildCharts returns the charts of the results (interrupted runs left
// out): latency percentiles against rate for chat in open loop and for
// room (one chart per room size), and room deliveries/s against room size
// (one series per push rate). Charts without data are left out.
func buildCharts(results []*suite.Result) []namedChart {
	var out []namedChart
	var chat, chatCluster []latencySample // one process; attached to several comets
	room := map[int][]latencySample{}
	type sizeKey struct {
		rate float64
		n    int
	}
	deliveries := map[sizeKey][]float64{}
	for _, r := range results {
		if r.Interrupted {
			continue
		}
		if r.Chat != nil && r.Chat.Config.Rate > 0 && r.Chat.Stats.Sent > 0 {
			s := latencySample{rate: r.Chat.Config.Rate, achieved: r.Chat.Stats.SentPerSec, lat: r.Chat.Stats.E2ELatency}
			if r.ClusterSuffix() != "" {
				chatCluster = append(chatCluster, s)
			} else {
				chat = append(chat, s)
			}
		}
		if r.Room != nil {
			n := r.Room.Config.N
			for _, s := range r.Room.Steps {
				if s.PushesSent == 0 {
					continue
				}
				room[n] = append(room[n], latencySample{rate: s.Rate, achieved: s.AchievedRate, lat: s.Latency})
				if s.DeliveriesPerSec > 0 {
					k := sizeKey{s.Rate, n}
					deliveries[k] = append(deliveries[k], s.DeliveriesPerSec)
				}
			}
		}
	}
	if len(chat) > 0 {
		out = append(out, namedChart{File: "chart-chat-latency-vs-rate.svg", Caption: "chat (open loop): end-to-end latency percentiles against message rate",
			Chart: latencyChart("chat, open loop: end-to-end latency against rate", "messages/s sent (median per requested rate)", chat)})
	}
	if len(chatCluster) > 0 {
		out = append(out, namedChart{File: "chart-chat-cluster-latency-vs-rate.svg", Caption: "chat (open loop) on a cluster (several comets): end-to-end latency percentiles against message rate",
			Chart: latencyChart("chat on a cluster, open loop: end-to-end latency against rate", "messages/s sent (median per requested rate)", chatCluster)})
	}
	sizes := make([]int, 0, len(room))
	for n := range room {
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	for _, n := range sizes {
		out = append(out, namedChart{File: fmt.Sprintf("chart-room-latency-vs-rate-n%d.svg", n),
			Caption: fmt.Sprintf("room of %d connections: push-to-receive latency percentiles against push rate", n),
			Chart:   latencyChart(fmt.Sprintf("room of %d connections: push-to-receive latency against rate", n), "pushes/s achieved (median per requested rate)", room[n])})
	}
	if len(deliveries) > 0 {
		c := chart.Chart{Title: "room fan-out: deliveries/s against room size", XLabel: "connections in the room", YLabel: "deliveries/s (median over runs)"}
		var rates []float64
		var ns []float64
		for k := range deliveries {
			if !slices.Contains(rates, k.rate) {
				rates = append(rates, k.rate)
			}
			ns = append(ns, float64(k.n))
		}
		slices.Sort(rates)
		c.XLog = slices.Max(ns) >= 10*slices.Min(ns)
		for _, rate := range rates {
			ser := chart.Series{Name: fmt.Sprintf("%s pushes/s", chart.FormatNumber(rate))}
			for _, n := range sizes {
				if v, ok := deliveries[sizeKey{rate, n}]; ok {
					ser.Points = append(ser.Points, chart.Point{X: float64(n), Y: suite.SpreadOf(v).Median})
				}
			}
			c.Series = append(c.Series, ser)
		}
		out = append(out, namedChart{File: "chart-room-deliveries-vs-size.svg", Caption: "room fan-out: deliveries/s against room size, one line per push rate", Chart: c})
	}
	return out
}

// writeCharts writes each chart into dir and returns them with their path.
func writeCharts(dir string, charts []namedChart) ([]namedChart, error) {
	if len(charts) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("charts dir: %w", err)
	}
	for i := range charts {
		charts[i].path = filepath.Join(dir, charts[i].File)
		if err := os.WriteFile(charts[i].path, charts[i].Chart.SVG(), 0o644); err != nil {
			return nil, fmt.Errorf("write chart: %w", err)
		}
	}
	return charts, nil
}

// chartsMarkdown links the written charts, with paths relative to the
// README's directory.
func chartsMarkdown(readmeDir string, charts []namedChart) string {
	if len(charts) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n### Charts\n\n")
	b.WriteString("Drawn by `goim-bench report` from the same result files (interrupted runs left out; several runs at one rate or size: their median).\n\n")
	for _, c := range charts {
		rel, err := filepath.Rel(readmeDir, c.path)
		if err != nil {
			rel = c.path
		}
		fmt.Fprintf(&b, "![%s](%s)\n\n", c.Caption, filepath.ToSlash(rel))
	}
	return b.String()
}

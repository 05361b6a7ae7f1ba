package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/goimdev/goim/benchmarks/loadgen"
)

// ConnsConfig configures the conns scenario: N authenticated idle
// connections, and what they cost the server.
type ConnsConfig struct {
	// N is the number of connections (one user each).
	N int `json:"n"`
	// Transport is "tcp" or "ws".
	Transport string `json:"transport"`
	// Rate is the connect rate in connections per second (all workers).
	Rate float64 `json:"rate"`
	// Settle is how long the connections stay idle (heartbeating) before
	// the server is measured; the idle CPU is measured over it.
	Settle time.Duration `json:"settle_ns"`
	// Samples is the number of RSS samples taken at the end of Settle,
	// one per second. Default 5.
	Samples int `json:"samples"`
	// Room, if set, is joined by every connection at auth.
	Room string `json:"room,omitempty"`
	// MaxInFlight bounds each worker's concurrent handshakes.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// Heartbeat overrides the interval the server announces.
	Heartbeat time.Duration `json:"heartbeat_ns,omitempty"`
	// Hold, if positive, keeps the connections open (heartbeating) this
	// long after the measurement; the connections the server closed during
	// it are the run's HoldDrops, which must be 0.
	Hold time.Duration `json:"hold_ns,omitempty"`
	// Addrs is informational: the comet addresses the connections were
	// spread over (round robin), when more than one.
	Addrs []string `json:"addrs,omitempty"`
	// PIDs is informational: the server processes whose RSS and CPU are
	// summed, when more than one.
	PIDs []int `json:"pids,omitempty"`
	// Workers is informational: the pool's size.
	Workers int `json:"workers"`
	// Progress receives the live progress line (e.g. os.Stderr); nil: none.
	Progress io.Writer `json:"-"`
}

func (c *ConnsConfig) setDefaults() {
	if c.Transport == "" {
		c.Transport = loadgen.TransportTCP
	}
	if c.Samples <= 0 {
		c.Samples = 5
	}
	if c.Settle <= 0 {
		c.Settle = 15 * time.Second
	}
}

// ConnsResult is the conns scenario's part of a Result.
type ConnsResult struct {
	Config ConnsConfig `json:"config"`
	Runs   []ConnsRun  `json:"runs"`
	// Summary spreads the per-run figures (median RSS per connection of
	// each run, connect rate, idle CPU) over the runs.
	Summary ConnsSummary `json:"summary"`
}

// ConnsSummary spreads per-run figures over runs.
type ConnsSummary struct {
	RSSPerConnBytes Spread `json:"rss_per_conn_bytes"`
	ConnectRate     Spread `json:"connect_rate"`
	IdleCPUPercent  Spread `json:"idle_cpu_percent"`
	OtherCPUPercent Spread `json:"other_cpu_percent"`
	Goroutines      Spread `json:"goroutines"`
}

// ConnsRun is one run of the conns scenario.
type ConnsRun struct {
	Requested int   `json:"requested"`
	Connected int64 `json:"connected"`
	Failed    int64 `json:"failed"`
	// Errors are the failure reasons of handshakes and of connections
	// closed by the server during the run.
	Errors map[string]int64 `json:"errors,omitempty"`
	// ConnectSeconds is the ramp's duration; ConnectRate = Connected / it.
	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectRate    float64 `json:"connect_rate"`
	// Handshake is dial-to-AuthReply latency.
	Handshake Latency `json:"handshake"`
	// OpenAfterSettle is how many connections were still open at the end.
	OpenAfterSettle int64 `json:"open_after_settle"`
	// ClosedByServer counts connections the server closed during the run.
	ClosedByServer int64            `json:"closed_by_server"`
	Disconnects    map[string]int64 `json:"disconnects,omitempty"`
	// BaselineRSSBytes is the server's RSS before connecting (median of samples).
	BaselineRSSBytes float64 `json:"baseline_rss_bytes"`
	// RSSBytes spreads the server RSS samples taken after settling.
	RSSBytes Spread `json:"rss_bytes"`
	// RSSPerConnBytes is (RSS - baseline) / connected, for the min, median
	// and max sample.
	RSSPerConnBytes Spread `json:"rss_per_conn_bytes"`
	// GoroutinesBaseline and Goroutines are go_goroutines before and after.
	GoroutinesBaseline float64 `json:"goroutines_baseline"`
	Goroutines         float64 `json:"goroutines"`
	// IdleCPUPercent is the server's CPU use over the settle window, in
	// percent of one core; -1 when unknown.
	IdleCPUPercent float64 `json:"idle_cpu_percent"`
	// WorkerCPUPercent is the workers' summed CPU over the same window;
	// IRQCPUPercent the machine's interrupt time (charged to no process;
	// loopback TCP delivery lands here); OtherCPUPercent the rest of the
	// machine's busy CPU (other processes: a noisy machine shows here).
	// LoadAvg is the 1-minute load average at the end.
	WorkerCPUPercent float64 `json:"worker_cpu_percent"`
	IRQCPUPercent    float64 `json:"irq_cpu_percent"`
	OtherCPUPercent  float64 `json:"other_cpu_percent"`
	LoadAvg          float64 `json:"load_avg"`
	SettleSeconds    float64 `json:"settle_seconds"`
	// Heartbeats written by the clients and answered by the server during
	// the whole run.
	HeartbeatsSent   int64 `json:"heartbeats_sent"`
	HeartbeatReplies int64 `json:"heartbeat_replies"`
	// HeartbeatSeconds is the interval the clients used (the server's
	// announced heartbeat_s).
	HeartbeatSeconds float64 `json:"heartbeat_seconds"`
	// WorkerRSSBytes is the sum of the workers' RSS after settling.
	WorkerRSSBytes int64 `json:"worker_rss_bytes"`
	// ServerMetrics are selected /metrics values after settling.
	ServerMetrics map[string]float64 `json:"server_metrics,omitempty"`
	// RSSByPIDBytes is each server process's RSS at the last sample, in
	// the order of Target.PIDs (several server processes only; goim-bench
	// records the same list in ConnsConfig.PIDs).
	RSSByPIDBytes []int64 `json:"rss_by_pid_bytes,omitempty"`
	// HoldSeconds is how long the connections were held after the
	// measurement (ConnsConfig.Hold); HoldDrops the connections the server
	// closed meanwhile (must be 0); HoldOpen those still open at its end;
	// HoldHeartbeats and HoldHeartbeatReplies the heartbeats of the hold;
	// HoldRSSBytes the server RSS at its end (summed over processes).
	HoldSeconds          float64 `json:"hold_seconds,omitempty"`
	HoldDrops            int64   `json:"hold_drops,omitempty"`
	HoldOpen             int64   `json:"hold_open,omitempty"`
	HoldHeartbeats       int64   `json:"hold_heartbeats,omitempty"`
	HoldHeartbeatReplies int64   `json:"hold_heartbeat_replies,omitempty"`
	HoldRSSBytes         int64   `json:"hold_rss_bytes,omitempty"`
	// Stop is how the server stopped (spawned servers only).
	Stop *StopReport `json:"stop,omitempty"`
}

// RunConns runs the conns scenario once against tgt with the pool's workers.
// It leaves the connections open: the caller closes them (pool.CloseConns)
// and stops the server.
func RunConns(ctx context.Context, cfg ConnsConfig, tgt Target, pool *loadgen.Pool) (ConnsRun, error) {
	cfg.setDefaults()
	run := ConnsRun{Requested: cfg.N, IdleCPUPercent: -1, WorkerCPUPercent: -1}
	if cfg.N > len(tgt.UserIDs) {
		return run, fmt.Errorf("conns: %d connections need %d users, have %d", cfg.N, cfg.N, len(tgt.UserIDs))
	}
	pids := tgt.ServerPIDs()
	// Baseline: the server before any connection.
	if len(pids) > 0 {
		samples, err := sampleRSSSum(ctx, pids, 3, 200*time.Millisecond)
		if err != nil {
			return run, fmt.Errorf("conns: baseline rss: %w", err)
		}
		run.BaselineRSSBytes = SpreadOf(samples).Median
	}
	if m, err := ScrapeMetrics(ctx, tgt.HTTPAddr); err == nil {
		run.GoroutinesBaseline = m["go_goroutines"]
	}

	spec := loadgen.ConnectSpec{
		Addr:        loadgen.JoinAddrs(tgt.CometAddrs(cfg.Transport)),
		Transport:   cfg.Transport,
		Secret:      tgt.Secret,
		UserIDs:     tgt.UserIDs[:cfg.N],
		Room:        cfg.Room,
		Rate:        cfg.Rate,
		MaxInFlight: cfg.MaxInFlight,
		Heartbeat:   cfg.Heartbeat,
	}
	t0 := time.Now()
	st, err := pool.Connect(ctx, spec, time.Second, progressPrinter(cfg.Progress, "connect", t0))
	run.ConnectSeconds = time.Since(t0).Seconds()
	run.Connected, run.Failed = st.Authed, st.Failed
	run.ConnectRate = math.Round(float64(st.Authed) / run.ConnectSeconds)
	run.Handshake = histSummary(st.HandshakeLatency)
	if err != nil {
		return run, fmt.Errorf("conns: connect: %w", err)
	}

	// Settle: idle connections heartbeating; measure the server's CPU over
	// the window and its RSS at the end.
	cpu, wcpu, dcpu, mcpu := startCPUs(pids), startCPUs(pool.PIDs()), startCPU(os.Getpid()), startMachine()
	settleStart := time.Now()
	sampleGap := time.Second
	wait := cfg.Settle - time.Duration(cfg.Samples-1)*sampleGap
	if err := sleepProgress(ctx, max(wait, 0), cfg.Progress, "settle", pool); err != nil {
		return run, err
	}
	if len(pids) > 0 {
		samples, err := sampleRSSSum(ctx, pids, cfg.Samples, sampleGap)
		if err != nil {
			return run, fmt.Errorf("conns: rss: %w", err)
		}
		run.RSSBytes = SpreadOf(samples)
		perConn := make([]float64, len(samples))
		for i, s := range samples {
			perConn[i] = math.Round((s - run.BaselineRSSBytes) / float64(max(st.Authed, 1)))
		}
		run.RSSPerConnBytes = SpreadOf(perConn)
		if len(pids) > 1 {
			for _, pid := range pids {
				rss, _ := loadgen.ReadRSS(pid)
				run.RSSByPIDBytes = append(run.RSSByPIDBytes, rss)
			}
		}
	}
	run.IdleCPUPercent, run.WorkerCPUPercent = cpu.percent(), wcpu.percent()
	run.OtherCPUPercent, run.IRQCPUPercent = -1, -1
	if tgt.PID != os.Getpid() {
		busy, irq := mcpu.percent()
		run.IRQCPUPercent = irq
		run.OtherCPUPercent = otherCPU(busy, run.IdleCPUPercent, run.WorkerCPUPercent, dcpu.percent(), irq)
	}
	run.LoadAvg, _ = loadgen.ReadLoadAvg()
	run.SettleSeconds = time.Since(settleStart).Seconds()
	if m, err := ScrapeMetrics(ctx, tgt.HTTPAddr); err == nil {
		run.Goroutines = m["go_goroutines"]
		run.ServerMetrics = m
	}
	st, err = pool.Stats(ctx, false)
	if err != nil {
		return run, fmt.Errorf("conns: stats: %w", err)
	}
	// Heartbeats written just before the snapshot may still be in flight:
	// give their replies a moment before calling any missing.
	for deadline := time.Now().Add(3 * time.Second); st.HeartbeatReplies < st.HeartbeatsSent && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		later, err := pool.Stats(ctx, false)
		if err != nil {
			return run, fmt.Errorf("conns: stats: %w", err)
		}
		st.HeartbeatReplies = min(later.HeartbeatReplies, st.HeartbeatsSent)
	}
	run.OpenAfterSettle = st.Open
	run.ClosedByServer = st.Closed
	run.Disconnects = st.Disconnects
	run.Errors = st.Errors
	run.HeartbeatsSent, run.HeartbeatReplies = st.HeartbeatsSent, st.HeartbeatReplies
	run.HeartbeatSeconds = float64(st.HeartbeatMS) / 1000
	run.WorkerRSSBytes = st.RSSBytes
	if cfg.Hold > 0 {
		if err := holdConns(ctx, cfg, pids, pool, &run, st); err != nil {
			return run, err
		}
	}
	return run, nil
}

// holdConns keeps the connections open for cfg.Hold (the workers keep
// heartbeating) and records what the server closed meanwhile. before is
// the stats snapshot taken just before.
func holdConns(ctx context.Context, cfg ConnsConfig, pids []int, pool *loadgen.Pool, run *ConnsRun, before loadgen.Stats) error {
	t0 := time.Now()
	err := sleepProgress(ctx, cfg.Hold, cfg.Progress, "hold", pool)
	run.HoldSeconds = math.Round(time.Since(t0).Seconds()*10) / 10
	// Stats with their own deadline: an interrupted hold still reports.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	st, serr := pool.Stats(sctx, false)
	if serr != nil {
		return errors.Join(err, fmt.Errorf("conns: stats after hold: %w", serr))
	}
	run.HoldDrops = st.Closed - before.Closed
	run.HoldOpen = st.Open
	run.HoldHeartbeats = st.HeartbeatsSent - before.HeartbeatsSent
	run.HoldHeartbeatReplies = st.HeartbeatReplies - before.HeartbeatReplies
	run.ClosedByServer, run.Disconnects, run.Errors = st.Closed, st.Disconnects, st.Errors
	for _, pid := range pids {
		rss, _ := loadgen.ReadRSS(pid)
		run.HoldRSSBytes += rss
	}
	return err
}

// Summarize fills the summary from the runs.
func (r *ConnsResult) Summarize() {
	var rss, rate, cpu, other, gr []float64
	for _, run := range r.Runs {
		if run.RSSPerConnBytes.N > 0 {
			rss = append(rss, run.RSSPerConnBytes.Median)
		}
		rate = append(rate, run.ConnectRate)
		if run.IdleCPUPercent >= 0 {
			cpu = append(cpu, run.IdleCPUPercent)
		}
		if run.OtherCPUPercent >= 0 {
			other = append(other, run.OtherCPUPercent)
		}
		gr = append(gr, run.Goroutines)
	}
	r.Summary = ConnsSummary{RSSPerConnBytes: SpreadOf(rss), ConnectRate: SpreadOf(rate), IdleCPUPercent: SpreadOf(cpu),
		OtherCPUPercent: SpreadOf(other), Goroutines: SpreadOf(gr)}
}

// Check returns the anomalies of a run: failed handshakes, connections the
// server closed, missing heartbeat replies.
func (run ConnsRun) Check() []string {
	var notes []string
	if run.Connected != int64(run.Requested) {
		notes = append(notes, fmt.Sprintf("%d of %d connections authenticated (%d failed: %v)", run.Connected, run.Requested, run.Failed, run.Errors))
	}
	if run.HoldDrops > 0 {
		notes = append(notes, fmt.Sprintf("%d connections dropped by the server during the %.0fs hold", run.HoldDrops, run.HoldSeconds))
	}
	if run.ClosedByServer > 0 {
		notes = append(notes, fmt.Sprintf("the server closed %d connections during the run (Op 6 codes %v)", run.ClosedByServer, run.Disconnects))
	}
	if run.HeartbeatsSent > 0 && run.HeartbeatReplies < run.HeartbeatsSent*9/10 {
		notes = append(notes, fmt.Sprintf("only %d heartbeat replies for %d heartbeats", run.HeartbeatReplies, run.HeartbeatsSent))
	}
	if run.Stop != nil && (run.Stop.Killed || run.Stop.Exit != "0") {
		notes = append(notes, fmt.Sprintf("server stop: exit %s after %.1fs (killed: %v)", run.Stop.Exit, run.Stop.Seconds, run.Stop.Killed))
	}
	return notes
}

func histSummary(s loadgen.HistSnapshot) Latency {
	h := loadgen.NewHist()
	h.MergeSnapshot(s)
	return h.Summary()
}

// progressPrinter returns a Pool.Connect progress callback writing one
// live line to w ("\r" updates).
func progressPrinter(w io.Writer, what string, t0 time.Time) func(loadgen.Progress) {
	if w == nil {
		return nil
	}
	return func(p loadgen.Progress) {
		el := time.Since(t0).Seconds()
		fmt.Fprintf(w, "\r%s: %d/%d authed, %d failed, %d in flight, %.0f/s, %.1fs   ",
			what, p.Authed, p.Target, p.Failed, p.Attempted-p.Authed-p.Failed, float64(p.Authed)/max(el, 0.001), el)
		if p.Attempted >= p.Target && p.Authed+p.Failed >= p.Target {
			fmt.Fprintln(w)
		}
	}
}

// sleepProgress waits d, printing the pool's open connection count every
// second to w (if not nil).
func sleepProgress(ctx context.Context, d time.Duration, w io.Writer, what string, pool *loadgen.Pool) error {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			if w != nil {
				fmt.Fprintln(w)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(left, time.Second)):
		}
		if w != nil {
			if st, err := pool.Stats(ctx, false); err == nil {
				fmt.Fprintf(w, "\r%s: %d open, %d closed by server, %d heartbeats / %d replies, %.0fs left   ",
					what, st.Open, st.Closed, st.HeartbeatsSent, st.HeartbeatReplies, max(time.Until(end).Seconds(), 0))
			} else if !errors.Is(err, context.Canceled) {
				fmt.Fprintf(w, "\r%s: stats: %v", what, err)
			}
		}
	}
}

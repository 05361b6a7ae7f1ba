package suite

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/goimdev/goim/benchmarks/loadgen"
)

// RoomConfig configures the room scenario: N connections in one room and a
// pusher broadcasting to it through the push API at each rate in turn.
type RoomConfig struct {
	N         int    `json:"n"`
	Transport string `json:"transport"`
	// ConnectRate is the connect rate of the ramp (connections/s).
	ConnectRate float64 `json:"connect_rate"`
	// Rates are the push rates (pushes/s), run in order.
	Rates []float64 `json:"rates"`
	// Duration is how long each rate pushes.
	Duration time.Duration `json:"duration_ns"`
	// PayloadSize is the push body size in bytes (>= 16). Default 64.
	PayloadSize int `json:"payload_size"`
	// Concurrency is the pusher's requests in flight. Default 16.
	Concurrency int `json:"concurrency"`
	// Drain bounds the wait for deliveries after a rate's last push;
	// Quiet ends it early when no delivery arrived for that long.
	// Defaults 60s and 3s.
	Drain time.Duration `json:"drain_ns"`
	Quiet time.Duration `json:"quiet_ns"`
	// Op is the pushes' operation. Default 1000.
	Op int32 `json:"op"`
	// RoomType and Room name the room (push API type= and room=); the
	// connections join RoomType://Room. Defaults "live" and "bench".
	RoomType string `json:"room_type"`
	Room     string `json:"room"`
	// MaxInFlight bounds each worker's concurrent handshakes.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// Workers is informational: the pool's size.
	Workers int `json:"workers"`
	// Addrs and PIDs are informational: the comet addresses the
	// connections were spread over and the server processes measured
	// (CPU, RSS summed), when more than one.
	Addrs []string `json:"addrs,omitempty"`
	PIDs  []int    `json:"pids,omitempty"`
	// Progress receives live progress lines; nil: none.
	Progress io.Writer `json:"-"`
}

func (c *RoomConfig) setDefaults() {
	if c.Transport == "" {
		c.Transport = loadgen.TransportTCP
	}
	if c.PayloadSize < loadgen.PayloadMin {
		c.PayloadSize = 64
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Drain <= 0 {
		c.Drain = 60 * time.Second
	}
	if c.Quiet <= 0 {
		c.Quiet = 3 * time.Second
	}
	if c.Op == 0 {
		c.Op = 1000
	}
	if c.RoomType == "" {
		c.RoomType = "live"
	}
	if c.Room == "" {
		c.Room = "bench"
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
}

// RoomKey is the room the connections join.
func (c RoomConfig) RoomKey() string { return c.RoomType + "://" + c.Room }

// RoomResult is the room scenario's part of a Result.
type RoomResult struct {
	Config         RoomConfig       `json:"config"`
	Connected      int64            `json:"connected"`
	Failed         int64            `json:"failed"`
	ConnectErrors  map[string]int64 `json:"connect_errors,omitempty"`
	ConnectSeconds float64          `json:"connect_seconds"`
	// WarmupDelivered is how many connections got the warm-up push sent
	// before the measured steps (it shows the room is complete).
	WarmupDelivered int64      `json:"warmup_delivered"`
	Steps           []RoomStep `json:"steps"`
	// Stop is how the server stopped (spawned servers only).
	Stop *StopReport `json:"stop,omitempty"`
}

// RoomStep is one push rate.
type RoomStep struct {
	Rate float64 `json:"rate"`
	// PushesSent were accepted by the push API; PushErrors failed.
	PushesSent     int64            `json:"pushes_sent"`
	PushErrors     int64            `json:"push_errors"`
	PushErrorKinds map[string]int64 `json:"push_error_kinds,omitempty"`
	// SendSeconds is how long the pusher took; AchievedRate = sent / it.
	SendSeconds  float64 `json:"send_seconds"`
	AchievedRate float64 `json:"achieved_rate"`
	// Receivers is the number of open connections at the step's start;
	// Expected = PushesSent * Receivers.
	Receivers int64 `json:"receivers"`
	Expected  int64 `json:"expected"`
	Delivered int64 `json:"delivered"`
	// Delivered counts distinct deliveries (duplicates excluded);
	// Loss = Expected - Delivered.
	Loss    int64   `json:"loss"`
	LossPct float64 `json:"loss_pct"`
	// DeliveriesPerSec = Delivered / (last delivery - first push).
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	DeliverySeconds  float64 `json:"delivery_seconds"`
	// Latency is push-to-receive (the pusher's timestamp to the worker's
	// read, one machine clock) over every delivery.
	Latency Latency `json:"latency"`
	// PushHTTP is the push API's request latency.
	PushHTTP Latency `json:"push_http"`
	// Disconnects are the Op 6 codes received during the step;
	// ClosedByServer the connections that ended.
	Disconnects    map[string]int64 `json:"disconnects,omitempty"`
	ClosedByServer int64            `json:"closed_by_server"`
	// Reordered deliveries arrived after a higher sequence number (normal
	// with Concurrency > 1: concurrent requests reach the server in any
	// order); Duplicates were received twice by one connection.
	Reordered  int64 `json:"reordered"`
	Duplicates int64 `json:"duplicates"`
	// DrainTimedOut is set when deliveries were still missing at the end.
	DrainTimedOut bool `json:"drain_timed_out,omitempty"`
	// ServerCPUPercent is the server's CPU over the step (one core = 100);
	// ServerRSSBytes its RSS at the end (both summed over the server
	// processes of a cluster).
	ServerCPUPercent float64 `json:"server_cpu_percent"`
	ServerRSSBytes   int64   `json:"server_rss_bytes,omitempty"`
	// WorkerCPUPercent and DriverCPUPercent are the load generator's own
	// CPU over the step (workers summed; the driver runs the pusher): on a
	// small machine they compete with the server for the same cores.
	WorkerCPUPercent float64 `json:"worker_cpu_percent"`
	DriverCPUPercent float64 `json:"driver_cpu_percent"`
	// IRQCPUPercent is the machine's interrupt time (charged to no
	// process; loopback TCP delivery lands here); OtherCPUPercent the rest
	// of the machine's busy CPU (other processes); LoadAvg the 1-minute
	// load average at the end.
	IRQCPUPercent   float64 `json:"irq_cpu_percent"`
	OtherCPUPercent float64 `json:"other_cpu_percent"`
	LoadAvg         float64 `json:"load_avg"`
	// CloseReasons are the client-side reasons of the connections that
	// ended during the step (e.g. "closed: eof").
	CloseReasons map[string]int64 `json:"close_reasons,omitempty"`
	// Heartbeats written and answered during the step, failed heartbeat
	// writes, and the heartbeat loop's worst lag (ms).
	HeartbeatsSent   int64 `json:"heartbeats_sent"`
	HeartbeatReplies int64 `json:"heartbeat_replies"`
	HeartbeatErrors  int64 `json:"heartbeat_errors,omitempty"`
	HeartbeatLagMS   int64 `json:"heartbeat_lag_ms"`
	// ServerMetrics are the server's goim_* counters over the step
	// (after - before; gauges: the value after).
	ServerMetrics map[string]float64 `json:"server_metrics,omitempty"`
	// WorkerRSSBytes is the sum of the workers' RSS at the end.
	WorkerRSSBytes int64 `json:"worker_rss_bytes"`
}

// RunRoom runs the room scenario against tgt. It leaves the connections
// open; the caller closes them and stops the server.
func RunRoom(ctx context.Context, cfg RoomConfig, tgt Target, pool *loadgen.Pool) (*RoomResult, error) {
	cfg.setDefaults()
	res := &RoomResult{Config: cfg}
	if cfg.N > len(tgt.UserIDs) {
		return res, fmt.Errorf("room: %d connections need %d users, have %d", cfg.N, cfg.N, len(tgt.UserIDs))
	}
	spec := loadgen.ConnectSpec{
		Addr:        loadgen.JoinAddrs(tgt.CometAddrs(cfg.Transport)),
		Transport:   cfg.Transport,
		Secret:      tgt.Secret,
		UserIDs:     tgt.UserIDs[:cfg.N],
		Room:        cfg.RoomKey(),
		Accepts:     []int32{cfg.Op},
		Rate:        cfg.ConnectRate,
		MaxInFlight: cfg.MaxInFlight,
	}
	t0 := time.Now()
	st, err := pool.Connect(ctx, spec, time.Second, progressPrinter(cfg.Progress, "connect", t0))
	res.ConnectSeconds = time.Since(t0).Seconds()
	res.Connected, res.Failed, res.ConnectErrors = st.Authed, st.Failed, st.Errors
	if err != nil {
		return res, fmt.Errorf("room: connect: %w", err)
	}
	if st.Authed == 0 {
		return res, fmt.Errorf("room: no connection authenticated: %v", st.Errors)
	}

	hc := loadgen.NewPushClient(cfg.Concurrency)
	defer hc.CloseIdleConnections()
	push := loadgen.PushSpec{
		HTTPAddr: tgt.HTTPAddr, Op: cfg.Op, RoomType: cfg.RoomType, Room: cfg.Room,
		PayloadSize: cfg.PayloadSize, Concurrency: cfg.Concurrency, FirstSeq: 1, AdminKey: tgt.AdminKey,
	}

	// Warm-up: one push must reach every connection before measuring (the
	// room registrations may trail the AuthReplies).
	if _, err := pool.Stats(ctx, true); err != nil {
		return res, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		w := push
		w.Rate, w.Duration, w.Concurrency = 1, time.Second, 1
		pr, err := loadgen.Push(ctx, hc, w)
		if err != nil {
			return res, fmt.Errorf("room: warm-up push: %w", err)
		}
		if pr.Sent == 0 {
			return res, fmt.Errorf("room: warm-up push refused: %v", pr.ErrorKind)
		}
		push.FirstSeq = pr.NextSeq
		want := pr.Sent * st.Open
		got, _, err := waitDeliveries(ctx, pool, want, 5*time.Second, time.Second)
		if err != nil {
			return res, err
		}
		res.WarmupDelivered = got.Delivered / pr.Sent
		if got.Delivered >= want {
			break
		}
		if _, err := pool.Stats(ctx, true); err != nil {
			return res, err
		}
	}

	for _, rate := range cfg.Rates {
		step, err := runRoomStep(ctx, cfg, tgt, pool, hc, &push, rate)
		res.Steps = append(res.Steps, step)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func runRoomStep(ctx context.Context, cfg RoomConfig, tgt Target, pool *loadgen.Pool, hc *http.Client, push *loadgen.PushSpec, rate float64) (RoomStep, error) {
	step := RoomStep{Rate: rate}
	before, err := pool.Stats(ctx, true) // zero the delivery counters
	if err != nil {
		return step, err
	}
	step.Receivers = before.Open
	mBefore, _ := ScrapeMetrics(ctx, tgt.HTTPAddr)
	cpu, wcpu, dcpu, mcpu := startCPUs(tgt.ServerPIDs()), startCPUs(pool.PIDs()), startCPU(os.Getpid()), startMachine()
	p := *push
	p.Rate, p.Duration = rate, cfg.Duration

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			return
		}
		t0 := time.Now()
		for {
			select {
			case <-stopProgress:
				fmt.Fprintln(cfg.Progress)
				return
			case <-time.After(time.Second):
			}
			if st, err := pool.Stats(ctx, false); err == nil {
				el := time.Since(t0).Seconds()
				fmt.Fprintf(cfg.Progress, "\rrate %g/s: %.0fs, %d delivered (%.0f/s), %d open, %d closed   ",
					rate, el, st.Delivered, float64(st.Delivered)/el, st.Open, st.Closed-before.Closed)
			}
		}
	}()
	pr, perr := loadgen.Push(ctx, hc, p)
	push.FirstSeq = pr.NextSeq
	step.PushesSent, step.PushErrors = pr.Sent, pr.Errors
	if len(pr.ErrorKind) > 0 {
		step.PushErrorKinds = pr.ErrorKind
	}
	step.SendSeconds = pr.End.Sub(pr.Start).Seconds()
	step.AchievedRate = math.Round(float64(pr.Sent)/max(step.SendSeconds, 1e-9)*10) / 10
	step.PushHTTP = pr.HTTP.Summary()
	step.Expected = pr.Sent * step.Receivers
	var st loadgen.Stats
	if perr == nil {
		st, step.DrainTimedOut, err = waitDeliveries(ctx, pool, step.Expected, cfg.Drain, cfg.Quiet)
	}
	close(stopProgress)
	<-progressDone
	if perr != nil {
		return step, fmt.Errorf("room: push at %g/s: %w", rate, perr)
	}
	if err != nil {
		return step, err
	}
	step.ServerCPUPercent, step.WorkerCPUPercent, step.DriverCPUPercent = cpu.percent(), wcpu.percent(), dcpu.percent()
	busy, irq := mcpu.percent()
	step.IRQCPUPercent = irq
	step.OtherCPUPercent = otherCPU(busy, step.ServerCPUPercent, step.WorkerCPUPercent, step.DriverCPUPercent, irq)
	if tgt.PID == os.Getpid() { // in-process server: the driver figure is the server's
		step.DriverCPUPercent, step.OtherCPUPercent = -1, -1
	}
	step.LoadAvg, _ = loadgen.ReadLoadAvg()
	for _, pid := range tgt.ServerPIDs() {
		rss, _ := loadgen.ReadRSS(pid)
		step.ServerRSSBytes += rss
	}
	step.Delivered = st.Delivered - st.Duplicates
	step.Loss = step.Expected - step.Delivered
	if step.Expected > 0 {
		step.LossPct = math.Round(float64(step.Loss)/float64(step.Expected)*1e6) / 1e4
	}
	if st.LastRecvUnixNano > 0 {
		step.DeliverySeconds = float64(st.LastRecvUnixNano-pr.Start.UnixNano()) / 1e9
		step.DeliveriesPerSec = math.Round(float64(st.Delivered) / max(step.DeliverySeconds, 1e-9))
	}
	step.Latency = histSummary(st.Latency)
	step.Disconnects = st.Disconnects
	step.ClosedByServer = st.Closed - before.Closed
	step.Reordered, step.Duplicates = st.Reordered, st.Duplicates
	step.WorkerRSSBytes = st.RSSBytes
	step.CloseReasons = diffCounts(before.Errors, st.Errors)
	step.HeartbeatsSent = st.HeartbeatsSent - before.HeartbeatsSent
	step.HeartbeatReplies = st.HeartbeatReplies - before.HeartbeatReplies
	step.HeartbeatErrors = st.HeartbeatErrors - before.HeartbeatErrors
	step.HeartbeatLagMS = st.HeartbeatLagMS
	if mAfter, err := ScrapeMetrics(ctx, tgt.HTTPAddr); err == nil && mBefore != nil {
		step.ServerMetrics = metricsDelta(mBefore, mAfter)
	}
	return step, nil
}

// waitDeliveries polls the pool until expected deliveries arrived, none
// arrived for quiet, or limit passed (timedOut).
func waitDeliveries(ctx context.Context, pool *loadgen.Pool, expected int64, limit, quiet time.Duration) (st loadgen.Stats, timedOut bool, err error) {
	deadline := time.Now().Add(limit)
	last, lastChange := int64(-1), time.Now()
	for {
		if st, err = pool.Stats(ctx, false); err != nil {
			return st, false, err
		}
		now := time.Now()
		if st.Delivered >= expected {
			return st, false, nil
		}
		if st.Delivered != last {
			last, lastChange = st.Delivered, now
		}
		if now.After(deadline) || now.Sub(lastChange) > quiet {
			return st, true, nil
		}
		select {
		case <-ctx.Done():
			return st, false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Check returns the anomalies of a room run.
func (r *RoomResult) Check() []string {
	var notes []string
	if r.Connected != int64(r.Config.N) {
		notes = append(notes, fmt.Sprintf("%d of %d connections authenticated (%d failed: %v)", r.Connected, r.Config.N, r.Failed, r.ConnectErrors))
	}
	if r.WarmupDelivered < r.Connected {
		notes = append(notes, fmt.Sprintf("the warm-up push reached %d of %d connections", r.WarmupDelivered, r.Connected))
	}
	for _, s := range r.Steps {
		if s.Loss != 0 {
			notes = append(notes, fmt.Sprintf("rate %g/s: %d of %d deliveries missing (%.4f%%); Op 6 codes received %v, %d connections closed by the server (client-side reasons %v; server-side closes %v)",
				s.Rate, s.Loss, s.Expected, s.LossPct, s.Disconnects, s.ClosedByServer, s.CloseReasons, s.serverCloses()))
		}
		if s.PushErrors > 0 {
			notes = append(notes, fmt.Sprintf("rate %g/s: %d push API errors %v", s.Rate, s.PushErrors, s.PushErrorKinds))
		}
		if s.AchievedRate < s.Rate*0.95 {
			notes = append(notes, fmt.Sprintf("rate %g/s: the pusher achieved only %.1f/s", s.Rate, s.AchievedRate))
		}
		if s.Duplicates > 0 {
			notes = append(notes, fmt.Sprintf("rate %g/s: %d deliveries duplicated", s.Rate, s.Duplicates))
		}
		if s.Reordered > 0 && r.Config.Concurrency == 1 {
			notes = append(notes, fmt.Sprintf("rate %g/s: %d deliveries out of order with one push in flight", s.Rate, s.Reordered))
		}
	}
	if r.Stop != nil && (r.Stop.Killed || r.Stop.Exit != "0") {
		notes = append(notes, fmt.Sprintf("server stop: exit %s after %.1fs (killed: %v)", r.Stop.Exit, r.Stop.Seconds, r.Stop.Killed))
	}
	return notes
}

// serverCloses returns the server's goim_comet_closes_total series of the
// step, by label set.
func (s RoomStep) serverCloses() map[string]float64 {
	out := map[string]float64{}
	for k, v := range s.ServerMetrics {
		if rest, ok := strings.CutPrefix(k, "goim_comet_closes_total{"); ok {
			out[strings.TrimSuffix(rest, "}")] = v
		}
	}
	return out
}

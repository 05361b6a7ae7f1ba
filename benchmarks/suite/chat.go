package suite

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/goimdev/goim/benchmarks/loadgen"
)

// ChatConfig configures the chat scenario: Pairs one-to-one conversations,
// each user with one connection; the first user of each pair sends Op 4
// SendReqs to the second, which reads the Op 22 message events.
type ChatConfig struct {
	Pairs     int    `json:"pairs"`
	Transport string `json:"transport"`
	// Rate is the total send rate (messages/s) over all pairs, paced (open
	// loop); 0 runs closed loop with InFlight messages per sender.
	Rate     float64 `json:"rate"`
	InFlight int     `json:"in_flight"`
	// Duration is the sending time. Default 15s.
	Duration time.Duration `json:"duration_ns"`
	// Drain bounds the wait for acks and events afterwards; Quiet ends it
	// when nothing arrived for that long. Defaults 30s and 3s.
	Drain time.Duration `json:"drain_ns"`
	Quiet time.Duration `json:"quiet_ns"`
	// Progress receives live progress lines; nil: none.
	Progress io.Writer `json:"-"`
}

func (c *ChatConfig) setDefaults() {
	if c.Transport == "" {
		c.Transport = loadgen.TransportTCP
	}
	if c.InFlight <= 0 {
		c.InFlight = 4
	}
	if c.Duration <= 0 {
		c.Duration = 15 * time.Second
	}
}

// ChatResult is the chat scenario's part of a Result.
type ChatResult struct {
	Config         ChatConfig `json:"config"`
	Connected      int        `json:"connected"`
	ConnectSeconds float64    `json:"connect_seconds"`
	Stats          MsgStats   `json:"stats"`
	// Profile is a summary of the server's CPU profile over the run (perf),
	// when one was taken.
	Profile string `json:"profile,omitempty"`
	// Stop is how the server stopped (spawned servers only).
	Stop *StopReport `json:"stop,omitempty"`
}

// RunChat connects 2*Pairs users of tgt and runs one sending window.
// The connections live in this process (no worker pool: a few thousand
// connections at most).
func RunChat(ctx context.Context, cfg ChatConfig, tgt Target) (*ChatResult, error) {
	cfg.setDefaults()
	res := &ChatResult{Config: cfg}
	if cfg.Pairs <= 0 || len(tgt.UserIDs) < 2*cfg.Pairs {
		return res, fmt.Errorf("chat: %d pairs need %d users, have %d", cfg.Pairs, 2*cfg.Pairs, len(tgt.UserIDs))
	}
	t0 := time.Now()
	conns, err := connectMsg(ctx, tgt, cfg.Transport, tgt.UserIDs[:2*cfg.Pairs])
	if err != nil {
		return res, err
	}
	res.Connected, res.ConnectSeconds = len(conns), round3(time.Since(t0).Seconds())
	senders := make([]*msgSender, cfg.Pairs)
	for i := range senders {
		senders[i] = &msgSender{conn: conns[2*i], toUser: conns[2*i+1].UserID, receivers: 1}
	}
	l := newMsgLoad(conns, senders)
	defer l.close()
	spec := msgRunSpec{Mode: ModeClosed, InFlight: cfg.InFlight, Duration: cfg.Duration, Drain: cfg.Drain, Quiet: cfg.Quiet, Progress: cfg.Progress}
	if cfg.Rate > 0 {
		spec.Mode, spec.Rate = ModeOpen, cfg.Rate
	}
	res.Stats, err = l.run(ctx, tgt, spec)
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress)
	}
	return res, err
}

// Check returns the run's anomalies in plain words.
func (r *ChatResult) Check() []string { return r.Stats.Check("chat") }

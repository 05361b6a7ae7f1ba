package suite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/benchmarks/loadgen"
	"github.com/goimdev/goim/internal/auth"
)

// GroupConfig configures the group scenario: one group of Members users,
// all online with one connection each; Senders of them send to the group.
type GroupConfig struct {
	Members   int    `json:"members"`
	Senders   int    `json:"senders"`
	Transport string `json:"transport"`
	// Rate is the total send rate (messages/s), paced; 0 runs closed loop
	// with InFlight messages per sender.
	Rate     float64       `json:"rate"`
	InFlight int           `json:"in_flight"`
	Duration time.Duration `json:"duration_ns"`
	Drain    time.Duration `json:"drain_ns"`
	Quiet    time.Duration `json:"quiet_ns"`
	Progress io.Writer     `json:"-"`
}

func (c *GroupConfig) setDefaults() {
	if c.Transport == "" {
		c.Transport = loadgen.TransportTCP
	}
	if c.Senders <= 0 {
		c.Senders = 8
	}
	c.Senders = min(c.Senders, c.Members)
	if c.InFlight <= 0 {
		c.InFlight = 2
	}
	if c.Duration <= 0 {
		c.Duration = 15 * time.Second
	}
}

// GroupResult is the group scenario's part of a Result.
type GroupResult struct {
	Config         GroupConfig `json:"config"`
	GroupID        int64       `json:"group_id"`
	Connected      int         `json:"connected"`
	ConnectSeconds float64     `json:"connect_seconds"`
	Stats          MsgStats    `json:"stats"`
	Stop           *StopReport `json:"stop,omitempty"`
}

// RunGroup creates a group of the first Members users of tgt (the first
// is its owner, through POST /api/v1/groups), connects them all and runs
// one sending window from the first Senders members. Every message is
// expected at the Members-1 other connections.
func RunGroup(ctx context.Context, cfg GroupConfig, tgt Target) (*GroupResult, error) {
	cfg.setDefaults()
	res := &GroupResult{Config: cfg}
	if cfg.Members < 2 || len(tgt.UserIDs) < cfg.Members {
		return res, fmt.Errorf("group: %d members need as many users (at least 2), have %d", cfg.Members, len(tgt.UserIDs))
	}
	uids := tgt.UserIDs[:cfg.Members]
	gid, err := CreateGroup(ctx, tgt, uids[0], uids[1:], cfg.Members)
	if err != nil {
		return res, err
	}
	res.GroupID = gid
	t0 := time.Now()
	conns, err := connectMsg(ctx, tgt, cfg.Transport, uids)
	if err != nil {
		return res, err
	}
	res.Connected, res.ConnectSeconds = len(conns), round3(time.Since(t0).Seconds())
	senders := make([]*msgSender, cfg.Senders)
	for i := range senders {
		senders[i] = &msgSender{conn: conns[i], groupID: gid, receivers: cfg.Members - 1}
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
func (r *GroupResult) Check() []string { return r.Stats.Check("group") }

// bearer mints a token for uid with the target's secret.
func bearer(tgt Target, uid int64) (string, error) {
	iss, err := auth.NewIssuer([]byte(tgt.Secret), "goim")
	if err != nil {
		return "", err
	}
	tok, _, err := iss.Issue(uid, "bench-http-"+strconv.FormatInt(uid, 10), 24*time.Hour)
	return tok, err
}

// CreateGroup creates a group owned by owner with members through the
// HTTP API and returns its id.
func CreateGroup(ctx context.Context, tgt Target, owner int64, members []int64, maxMembers int) (int64, error) {
	tok, err := bearer(tgt, owner)
	if err != nil {
		return 0, err
	}
	body, err := sonic.Marshal(map[string]any{"name": "bench", "members": members, "max_members": maxMembers})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+tgt.HTTPAddr+"/api/v1/groups", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("create group: %w", err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, resp.Body, 1<<20)); err != nil {
		return 0, fmt.Errorf("create group: %w", err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("create group: %s: %s", resp.Status, buf.String())
	}
	var out struct {
		GroupID int64 `json:"group_id"`
	}
	if err := sonic.Unmarshal(buf.Bytes(), &out); err != nil || out.GroupID == 0 {
		return 0, fmt.Errorf("create group: bad answer %q", buf.String())
	}
	return out.GroupID, nil
}

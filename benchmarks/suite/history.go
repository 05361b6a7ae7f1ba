package suite

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/benchmarks/loadgen"
)

// HistoryConfig configures the history scenario: Conversations one-to-one
// conversations are seeded with Messages messages each (through Op 4
// sends), then Readers concurrent clients read pages of 50 with
// GET /api/v1/conversations/{id}/messages?before_seq=&limit= for Duration.
// HotShare of the reads go to the latest page of the Hot hottest
// conversations; the rest read a random page of any conversation.
type HistoryConfig struct {
	Conversations int           `json:"conversations"`
	Messages      int           `json:"messages"`
	Hot           int           `json:"hot"`
	HotShare      float64       `json:"hot_share"`
	Readers       int           `json:"readers"`
	PageSize      int           `json:"page_size"`
	Duration      time.Duration `json:"duration_ns"`
	Transport     string        `json:"transport"`
	Progress      io.Writer     `json:"-"`
}

func (c *HistoryConfig) setDefaults() {
	if c.Transport == "" {
		c.Transport = loadgen.TransportTCP
	}
	if c.Messages <= 0 {
		c.Messages = 1000
	}
	if c.Hot <= 0 {
		c.Hot = max(1, c.Conversations/10)
	}
	c.Hot = min(c.Hot, c.Conversations)
	if c.HotShare <= 0 || c.HotShare > 1 {
		c.HotShare = 0.9
	}
	if c.Readers <= 0 {
		c.Readers = 32
	}
	if c.PageSize <= 0 {
		c.PageSize = 50
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
}

// HistoryResult is the history scenario's part of a Result.
type HistoryResult struct {
	Config HistoryConfig `json:"config"`
	// Seed is the seeding sends (closed loop, 8 in flight per sender).
	Seed MsgStats `json:"seed"`
	// Reads, ReadErrors (non-200 or bad bodies, by kind) and ShortPages
	// (fewer messages than expected for the page).
	Reads       int64            `json:"reads"`
	ReadErrors  map[string]int64 `json:"read_errors,omitempty"`
	ShortPages  int64            `json:"short_pages"`
	ReadsPerSec float64          `json:"reads_per_sec"`
	// Latency of every read; Hot and Cold split it.
	Latency     Latency `json:"latency"`
	HotLatency  Latency `json:"hot_latency"`
	ColdLatency Latency `json:"cold_latency"`
	// CacheHitRatio is hits / (hits + misses) from the server's metrics
	// when it exposes a message cache; -1 when it exposes none.
	CacheHitRatio    float64            `json:"cache_hit_ratio"`
	ServerCPUPercent float64            `json:"server_cpu_percent"`
	DriverCPUPercent float64            `json:"driver_cpu_percent"`
	Metrics          map[string]float64 `json:"metrics,omitempty"`
	Stop             *StopReport        `json:"stop,omitempty"`
}

// ConversationID is the one-to-one conversation id of two users.
func ConversationID(a, b int64) string {
	if a > b {
		a, b = b, a
	}
	return "p_" + strconv.FormatInt(a, 10) + "_" + strconv.FormatInt(b, 10)
}

// RunHistory seeds the conversations and runs the reads.
func RunHistory(ctx context.Context, cfg HistoryConfig, tgt Target) (*HistoryResult, error) {
	cfg.setDefaults()
	res := &HistoryResult{Config: cfg, CacheHitRatio: -1}
	if cfg.Conversations <= 0 || len(tgt.UserIDs) < 2*cfg.Conversations {
		return res, fmt.Errorf("history: %d conversations need %d users, have %d", cfg.Conversations, 2*cfg.Conversations, len(tgt.UserIDs))
	}
	uids := tgt.UserIDs[:2*cfg.Conversations]
	conns, err := connectMsg(ctx, tgt, cfg.Transport, uids)
	if err != nil {
		return res, err
	}
	senders := make([]*msgSender, cfg.Conversations)
	for i := range senders {
		senders[i] = &msgSender{conn: conns[2*i], toUser: uids[2*i+1], receivers: 1}
	}
	l := newMsgLoad(conns, senders)
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "seeding %d conversations with %d messages each...\n", cfg.Conversations, cfg.Messages)
	}
	res.Seed, err = l.run(ctx, tgt, msgRunSpec{Mode: ModeClosed, InFlight: 8, Limit: cfg.Messages, Progress: cfg.Progress})
	l.close()
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress)
	}
	if err != nil {
		return res, fmt.Errorf("seed: %w", err)
	}
	if res.Seed.Acked != int64(cfg.Conversations*cfg.Messages) {
		return res, fmt.Errorf("seed: %d of %d messages acked (refused: %s)", res.Seed.Acked, cfg.Conversations*cfg.Messages, codes(res.Seed.RefusedCodes))
	}

	type conv struct {
		id    string
		token string
	}
	convs := make([]conv, cfg.Conversations)
	for i := range convs {
		tok, err := bearer(tgt, uids[2*i])
		if err != nil {
			return res, err
		}
		convs[i] = conv{id: ConversationID(uids[2*i], uids[2*i+1]), token: tok}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: cfg.Readers * 2, MaxIdleConnsPerHost: cfg.Readers * 2, IdleConnTimeout: time.Minute}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	all, hot, cold := loadgen.NewHist(), loadgen.NewHist(), loadgen.NewHist()
	var reads, short atomic.Int64
	var emu sync.Mutex
	errs := map[string]int64{}
	countErr := func(k string) {
		emu.Lock()
		if _, ok := errs[k]; ok || len(errs) < 32 {
			errs[k]++
		}
		emu.Unlock()
	}
	before, _ := ScrapeMetrics(ctx, tgt.HTTPAddr)
	srvCPU, ownCPU := startCPU(tgt.PID), startCPU(os.Getpid())
	if tgt.PID == os.Getpid() {
		srvCPU = cpuMeter{} // in-process server: its CPU is ours
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	t0 := time.Now()
	var wg sync.WaitGroup
	maxSeq := int64(cfg.Messages)
	pages := max(1, (cfg.Messages+cfg.PageSize-1)/cfg.PageSize)
	for r := range cfg.Readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r)+1, uint64(t0.UnixNano())))
			for rctx.Err() == nil {
				var c conv
				var before int64
				isHot := rng.Float64() < cfg.HotShare
				if isHot {
					c, before = convs[rng.IntN(cfg.Hot)], maxSeq+1
				} else {
					c = convs[rng.IntN(len(convs))]
					before = maxSeq + 1 - int64(rng.IntN(pages)*cfg.PageSize)
				}
				want := min(int64(cfg.PageSize), before-1)
				start := time.Now()
				n, err := readPage(rctx, hc, tgt.HTTPAddr, c.id, c.token, before, cfg.PageSize)
				d := int64(time.Since(start))
				if rctx.Err() != nil {
					return // cut by the end of the window: not counted
				}
				if err != nil {
					countErr(err.Error())
					continue
				}
				reads.Add(1)
				all.Record(d)
				if isHot {
					hot.Record(d)
				} else {
					cold.Record(d)
				}
				if int64(n) < want {
					short.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	res.ServerCPUPercent, res.DriverCPUPercent = srvCPU.percent(), ownCPU.percent()
	res.Reads, res.ShortPages = reads.Load(), short.Load()
	res.ReadErrors = copyMap(errs)
	res.ReadsPerSec = round1(float64(res.Reads) / secs)
	res.Latency, res.HotLatency, res.ColdLatency = all.Summary(), hot.Summary(), cold.Summary()
	if after, err := ScrapeMetrics(ctx, tgt.HTTPAddr); err == nil && before != nil {
		res.Metrics = metricsDelta(before, after)
		res.CacheHitRatio = cacheHitRatio(res.Metrics)
	}
	return res, nil
}

// cacheHitRatio looks for a message/history cache's hit and miss counters
// among the server's metrics (series naming messages, history or msgcache:
// goim_msgcache_lookups_total{result="hit"|"miss"}, *{result=...} or
// *_hits_total / *_misses_total); -1 when there is none.
func cacheHitRatio(m map[string]float64) float64 {
	var hits, misses float64
	for k, v := range m {
		if !strings.Contains(k, "message") && !strings.Contains(k, "history") && !strings.Contains(k, "msgcache") {
			continue
		}
		switch {
		case strings.Contains(k, `result="hit"`), strings.HasSuffix(k, "_hits_total"):
			hits += v
		case strings.Contains(k, `result="miss"`), strings.HasSuffix(k, "_misses_total"):
			misses += v
		}
	}
	if hits+misses == 0 {
		return -1
	}
	return round3(hits / (hits + misses))
}

// readPage GETs one history page and returns how many messages it held.
func readPage(ctx context.Context, hc *http.Client, httpAddr, convID, token string, beforeSeq int64, limit int) (int, error) {
	u := "http://" + httpAddr + "/api/v1/conversations/" + convID + "/messages?before_seq=" + strconv.FormatInt(beforeSeq, 10) + "&limit=" + strconv.Itoa(limit)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("request: %s", reasonOf(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, fmt.Errorf("read body: %s", reasonOf(err))
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	var page struct {
		Messages []struct {
			Seq int64 `json:"seq"`
		} `json:"messages"`
	}
	if err := sonic.Unmarshal(body, &page); err != nil {
		return 0, fmt.Errorf("bad page body")
	}
	return len(page.Messages), nil
}

// reasonOf shortens an HTTP client error (no URLs: low cardinality).
func reasonOf(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// Check returns the run's anomalies in plain words.
func (r *HistoryResult) Check() []string {
	var notes []string
	notes = append(notes, r.Seed.Check("history seed")...)
	if len(r.ReadErrors) > 0 {
		notes = append(notes, "history reads failed: "+codes(r.ReadErrors))
	}
	if r.ShortPages > 0 {
		notes = append(notes, fmt.Sprintf("history: %d pages held fewer messages than seeded", r.ShortPages))
	}
	return notes
}

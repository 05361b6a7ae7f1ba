package suite

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/goimdev/goim/benchmarks/loadgen"
)

// keptMetrics are the metric name prefixes a result keeps from /metrics.
var keptMetrics = []string{"go_goroutines", "go_threads", "go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes",
	"process_resident_memory_bytes", "process_open_fds", "goim_"}

// ScrapeMetrics fetches GET /metrics and returns, per metric name kept
// (keptMetrics), the sum of its samples over all label sets. Histogram and
// summary series (_bucket, quantile lines) are skipped; their _sum and
// _count are kept.
func ScrapeMetrics(ctx context.Context, httpAddr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: http %d", resp.StatusCode)
	}
	return ParseMetrics(io.LimitReader(resp.Body, 32<<20))
}

// ParseMetrics parses the Prometheus text format as ScrapeMetrics does.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if !kept(name) || strings.HasSuffix(name, "_bucket") || strings.Contains(rest, "quantile=") {
			continue
		}
		if j := strings.LastIndexByte(rest, '}'); j >= 0 {
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

func kept(name string) bool {
	for _, p := range keptMetrics {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// sampleRSS takes n RSS samples of pid, every interval, and returns them.
func sampleRSS(ctx context.Context, pid, n int, interval time.Duration) ([]float64, error) {
	var out []float64
	for i := range n {
		if i > 0 {
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(interval):
			}
		}
		rss, err := loadgen.ReadRSS(pid)
		if err != nil {
			return out, err
		}
		out = append(out, float64(rss))
	}
	return out, nil
}

// cpuMeter measures a process's CPU use between two points in time.
type cpuMeter struct {
	pid   int
	ticks int64
	t     time.Time
	ok    bool
}

func startCPU(pid int) cpuMeter {
	if pid <= 0 {
		return cpuMeter{}
	}
	t, err := loadgen.ReadCPUTicks(pid)
	return cpuMeter{pid: pid, ticks: t, t: time.Now(), ok: err == nil}
}

// percent returns the CPU used since start in percent of one core (200 is
// two cores busy), or -1 if it could not be read.
func (m cpuMeter) percent() float64 {
	if !m.ok {
		return -1
	}
	t, err := loadgen.ReadCPUTicks(m.pid)
	if err != nil {
		return -1
	}
	wall := time.Since(m.t).Seconds()
	if wall <= 0 {
		return -1
	}
	return round1(float64(t-m.ticks) / loadgen.ClockTicks / wall * 100)
}

func round1(f float64) float64 {
	if f < 0 {
		return f
	}
	return float64(int64(f*10+0.5)) / 10
}

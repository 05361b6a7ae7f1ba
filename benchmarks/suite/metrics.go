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
// (keptMetrics), the sum of its samples over all label sets; for goim_*
// metrics with labels each series is also kept under its full name
// (`goim_comet_closes_total{code="slow_consumer"}`). Histogram and summary
// series (_bucket, quantile lines) are skipped; their _sum and _count are
// kept.
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
		series := ""
		if j := strings.LastIndexByte(rest, '}'); j >= 0 {
			series = name + rest[:j+1]
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
		if series != "" && strings.HasPrefix(name, "goim_") {
			out[series] += v
		}
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

// sampleRSSSum is sampleRSS of the sum of the RSS of pids.
func sampleRSSSum(ctx context.Context, pids []int, n int, interval time.Duration) ([]float64, error) {
	var out []float64
	for i := range n {
		if i > 0 {
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(interval):
			}
		}
		var sum int64
		for _, pid := range pids {
			rss, err := loadgen.ReadRSS(pid)
			if err != nil {
				return out, fmt.Errorf("pid %d: %w", pid, err)
			}
			sum += rss
		}
		out = append(out, float64(sum))
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

// cpuMeters measures the summed CPU use of several processes.
type cpuMeters []cpuMeter

func startCPUs(pids []int) cpuMeters {
	var ms cpuMeters
	for _, pid := range pids {
		ms = append(ms, startCPU(pid))
	}
	return ms
}

// percent returns the summed CPU use in percent of one core, or -1 if any
// process could not be read (or there are none).
func (ms cpuMeters) percent() float64 {
	if len(ms) == 0 {
		return -1
	}
	var sum float64
	for _, m := range ms {
		p := m.percent()
		if p < 0 {
			return -1
		}
		sum += p
	}
	return round1(sum)
}

// diffCounts returns after - before per key, without zero entries.
func diffCounts(before, after map[string]int64) map[string]int64 {
	var out map[string]int64
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			if out == nil {
				out = map[string]int64{}
			}
			out[k] = d
		}
	}
	return out
}

// metricsDelta returns, for every goim_* series, after - before for
// counters (_total, _sum, _count) and the after value for gauges; zero
// entries are left out.
func metricsDelta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if !strings.HasPrefix(k, "goim_") {
			continue
		}
		name, _, _ := strings.Cut(k, "{")
		if strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") {
			v -= before[k]
		}
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// machineMeter measures the whole machine's busy CPU over a window.
type machineMeter struct {
	start loadgen.MachineCPU
	t     time.Time
	ok    bool
}

func startMachine() machineMeter {
	m, err := loadgen.ReadMachineCPU()
	return machineMeter{start: m, t: time.Now(), ok: err == nil}
}

// percent returns the machine's busy CPU since start and the interrupt
// part of it, in percent of one core (all cores busy = 100 x cores), or -1.
func (m machineMeter) percent() (busy, irq float64) {
	if !m.ok {
		return -1, -1
	}
	now, err := loadgen.ReadMachineCPU()
	wall := time.Since(m.t).Seconds()
	if err != nil || wall <= 0 {
		return -1, -1
	}
	pc := func(ticks int64) float64 { return round1(float64(ticks) / loadgen.ClockTicks / wall * 100) }
	return pc(now.Busy - m.start.Busy), pc(now.IRQ - m.start.IRQ)
}

// otherCPU returns machine - sum(ours), or -1 if any is unknown.
func otherCPU(machine float64, ours ...float64) float64 {
	if machine < 0 {
		return -1
	}
	for _, o := range ours {
		if o < 0 {
			return -1
		}
		machine -= o
	}
	return round1(max(machine, 0))
}

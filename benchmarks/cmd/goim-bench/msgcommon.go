package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// msgFlags are the flags shared by the messaging scenarios (chat, group,
// history) on top of commonFlags.
type msgFlags struct {
	rate          float64
	inFlight      int
	duration      time.Duration
	drain         time.Duration
	quiet         time.Duration
	keepRateLimit bool
}

func (m *msgFlags) register(fs *flag.FlagSet, defaultInFlight int) {
	fs.Float64Var(&m.rate, "msg-rate", 0, "total send rate in messages/s, paced (open loop); 0: closed loop with -in-flight per sender")
	fs.IntVar(&m.inFlight, "in-flight", defaultInFlight, "closed loop: messages in flight per sending connection")
	fs.DurationVar(&m.duration, "duration", 15*time.Second, "sending time")
	fs.DurationVar(&m.drain, "drain", 30*time.Second, "longest wait for acks and events after the last send")
	fs.DurationVar(&m.quiet, "quiet", 3*time.Second, "end the wait when nothing arrived for this long")
	fs.BoolVar(&m.keepRateLimit, "keep-rate-limit", false, "keep the server's per-user send rate limit (by default the started server runs with logic.send_rate: -1)")
}

// serverConfig writes the YAML configuration of a started server for a
// messaging run (no per-user send rate limit unless kept; a member ceiling
// of at least maxMembers) and adds --config to the server arguments. It
// returns a cleanup.
func (f *commonFlags) serverConfig(m *msgFlags, maxMembers int) (func(), error) {
	if f.httpAddr != "" {
		return func() {}, nil // an external server keeps its configuration
	}
	dir, err := os.MkdirTemp("", "goim-bench-config-*")
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("logic:\n")
	if !m.keepRateLimit {
		b.WriteString("  send_rate: -1\n")
	}
	fmt.Fprintf(&b, "  max_members_ceiling: %d\n", max(2000, maxMembers))
	path := filepath.Join(dir, "goim.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f.serverArgs = strings.TrimSpace(f.serverArgs + " --config " + path)
	return func() { os.RemoveAll(dir) }, nil
}

// perfProfile samples pid's CPU with `perf record` for d and returns the
// top of `perf report` (self time per symbol), or why it could not.
func perfProfile(ctx context.Context, pid int, d time.Duration, top int) string {
	if pid <= 0 {
		return "no server pid"
	}
	perf, err := exec.LookPath("perf")
	if err != nil {
		return "perf not installed"
	}
	dir, err := os.MkdirTemp("", "goim-bench-perf-*")
	if err != nil {
		return err.Error()
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "perf.data")
	rec := exec.CommandContext(ctx, perf, "record", "-F", "499", "-g", "-o", data, "-p", fmt.Sprint(pid), "--", "sleep", fmt.Sprintf("%.0f", d.Seconds()))
	if out, err := rec.CombinedOutput(); err != nil {
		return fmt.Sprintf("perf record: %v: %s", err, lastLines(string(out), 3))
	}
	rep := exec.CommandContext(ctx, perf, "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol", "-g", "none")
	out, err := rep.Output()
	if err != nil {
		return fmt.Sprintf("perf report: %v", err)
	}
	return summarizePerf(string(out), top)
}

// summarizePerf turns `perf report --sort symbol` output into the CPU
// share per area (kernel, Go runtime, SQLite, each goim package...) and
// the top symbols.
func summarizePerf(report string, top int) string {
	type entry struct {
		pct  float64
		line string
	}
	areas := map[string]float64{}
	var syms []entry
	for _, l := range strings.Split(report, "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") || !strings.HasSuffix(f[0], "%") {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
		if err != nil {
			continue
		}
		sym := f[2]
		areas[perfArea(f[1], sym)] += pct
		if len(syms) < top {
			syms = append(syms, entry{pct, fmt.Sprintf("%6.2f%%  %s", pct, sym)})
		}
	}
	names := make([]string, 0, len(areas))
	for k := range areas {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return areas[names[i]] > areas[names[j]] })
	var b strings.Builder
	b.WriteString("by area:")
	for i, n := range names {
		if i == 12 || areas[n] < 0.5 {
			break
		}
		fmt.Fprintf(&b, " %s %.1f%%;", n, areas[n])
	}
	b.WriteString("\ntop symbols:\n")
	for _, s := range syms {
		b.WriteString(s.line)
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// perfArea names the part of the program a symbol belongs to.
func perfArea(kind, sym string) string {
	switch {
	case kind == "[k]":
		return "kernel"
	case strings.HasPrefix(sym, "modernc.org/sqlite"):
		return "sqlite"
	case strings.HasPrefix(sym, "modernc.org/libc"):
		return "sqlite-libc"
	case strings.HasPrefix(sym, "runtime.") || strings.HasPrefix(sym, "gcWriteBarrier") || strings.HasPrefix(sym, "aeshash"):
		return "go-runtime"
	case strings.HasPrefix(sym, "github.com/goimdev/goim/"):
		rest := strings.TrimPrefix(sym, "github.com/goimdev/goim/")
		if i := strings.IndexByte(rest, '.'); i > 0 {
			rest = rest[:i]
		}
		return rest
	case strings.HasPrefix(sym, "github.com/bytedance/sonic"):
		return "sonic"
	case strings.HasPrefix(sym, "0x"):
		return "unknown"
	}
	if i := strings.LastIndexByte(sym, '/'); i >= 0 {
		if j := strings.IndexByte(sym[i:], '.'); j > 0 {
			return sym[:i+j]
		}
	}
	if i := strings.IndexByte(sym, '.'); i > 0 {
		return sym[:i]
	}
	return sym
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// msgSession opens the server for a messaging scenario.
func (f *commonFlags) msgSession(ctx context.Context, m *msgFlags, users, maxMembers int, stderr io.Writer) (*session, func(), error) {
	f.n, f.noPool = users, true
	if err := f.validate(); err != nil {
		return nil, nil, err
	}
	cleanup, err := f.serverConfig(m, maxMembers)
	if err != nil {
		return nil, nil, err
	}
	s, err := f.open(ctx, stderr)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return s, cleanup, nil
}

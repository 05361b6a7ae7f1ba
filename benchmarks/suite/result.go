package suite

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/benchmarks/loadgen"
)

// ResultSchema is the version of the result document layout.
const ResultSchema = 1

// Result is the JSON document of one goim-bench invocation.
type Result struct {
	Schema     int       `json:"schema"`
	Scenario   string    `json:"scenario"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Command is the command line that produced the result.
	Command string     `json:"command"`
	Machine Machine    `json:"machine"`
	Server  ServerInfo `json:"server"`
	// Notes are anomalies noticed during the run (failed handshakes, lost
	// pushes, a server that did not exit...), in plain words.
	Notes []string `json:"notes,omitempty"`
	// Interrupted is set when the run was stopped by SIGINT or SIGTERM:
	// the figures are those of the part that ran.
	Interrupted bool         `json:"interrupted,omitempty"`
	Conns       *ConnsResult `json:"conns,omitempty"`
	Room        *RoomResult  `json:"room,omitempty"`
	// Chat, Group and History are the messaging scenarios.
	Chat    *ChatResult    `json:"chat,omitempty"`
	Group   *GroupResult   `json:"group,omitempty"`
	History *HistoryResult `json:"history,omitempty"`
}

// Machine describes where a benchmark ran.
type Machine struct {
	CPUModel      string `json:"cpu_model"`
	Cores         int    `json:"cores"`
	MemTotalBytes int64  `json:"mem_total_bytes"`
	Kernel        string `json:"kernel"`
	GoVersion     string `json:"go_version"`
	OSArch        string `json:"os_arch"`
}

// ServerInfo describes the server under test.
type ServerInfo struct {
	// Mode is "spawned" (goim-bench started it), "external" or "in-process".
	Mode     string   `json:"mode"`
	Binary   string   `json:"binary,omitempty"`
	Version  string   `json:"version,omitempty"`
	Args     []string `json:"args,omitempty"`
	TCPAddr  string   `json:"tcp_addr,omitempty"`
	WSAddr   string   `json:"ws_addr,omitempty"`
	HTTPAddr string   `json:"http_addr,omitempty"`
}

// Spread is the min, median and max of a set of samples.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// SpreadOf returns the spread of xs (zero for none). The median of an even
// count is the mean of the two middle values.
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Min: s[0], Median: m, Max: s[len(s)-1], N: len(s)}
}

// Latency is re-exported for the result types.
type Latency = loadgen.LatencySummary

// NewResult starts a result for scenario with the machine description.
func NewResult(scenario string, args []string) *Result {
	return &Result{
		Schema:    ResultSchema,
		Scenario:  scenario,
		StartedAt: time.Now().UTC(),
		Command:   strings.Join(args, " "),
		Machine:   DescribeMachine(),
	}
}

// ClusterSuffix is ", cluster of k comets" for a run attached to k > 1
// comet addresses (-addrs), "" otherwise: the report tells cluster rows
// from one-process ones with it.
func (r *Result) ClusterSuffix() string {
	if r.Server.Mode != "external" || !strings.Contains(r.Server.TCPAddr+r.Server.WSAddr, ",") {
		return ""
	}
	n := max(strings.Count(r.Server.TCPAddr, ","), strings.Count(r.Server.WSAddr, ",")) + 1
	return fmt.Sprintf(", cluster of %d comets", n)
}

// Notef adds a note.
func (r *Result) Notef(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// FileName is the result's file name: scenario and UTC start time.
func (r *Result) FileName() string {
	return r.Scenario + "-" + r.StartedAt.UTC().Format("20060102T150405Z") + ".json"
}

// Save writes the result as indented JSON into dir (created if needed) and
// returns the file path.
func (r *Result) Save(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results dir: %w", err)
	}
	b, err := r.Marshal()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, r.FileName())
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("write result: %w", err)
	}
	return path, nil
}

// Marshal encodes the result as indented JSON with a final newline.
func (r *Result) Marshal() ([]byte, error) {
	b, err := sonic.ConfigStd.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseResult decodes a result document.
func ParseResult(b []byte) (*Result, error) {
	var r Result
	if err := sonic.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode result: %w", err)
	}
	if r.Schema != ResultSchema {
		return nil, fmt.Errorf("result schema %d, want %d", r.Schema, ResultSchema)
	}
	return &r, nil
}

// LoadResults reads every *.json result in dir, oldest first.
func LoadResults(dir string) ([]*Result, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Result
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		r, err := ParseResult(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b *Result) int { return a.StartedAt.Compare(b.StartedAt) })
	return out, nil
}

// DescribeMachine reads the CPU model, memory and kernel from /proc.
func DescribeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
				m.MemTotalBytes = kb << 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// String is a one-line description of the machine.
func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %.1f GiB RAM, Linux %s, %s %s",
		m.CPUModel, m.Cores, float64(m.MemTotalBytes)/(1<<30), m.Kernel, m.GoVersion, m.OSArch)
}

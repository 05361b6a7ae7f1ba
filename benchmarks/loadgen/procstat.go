package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux architecture Go supports).
const ClockTicks = 100

// ReadRSS returns the resident set size of process pid in bytes (VmRSS of
// /proc/PID/status); pid 0 means this process.
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		v, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(v)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("rss: unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("rss: %w", err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("rss: no VmRSS line (process gone?)")
}

// ReadCPUTicks returns utime+stime of process pid in clock ticks
// (ClockTicks per second); pid 0 means this process.
func ReadCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	// The command name (field 2) is in parentheses and may contain spaces:
	// the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("cpu: malformed stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("cpu: short stat")
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	return ut + st, nil
}

func procPath(pid int, file string) string {
	if pid == 0 {
		return "/proc/self/" + file
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + file
}

// MachineCPU is a reading of the machine-wide CPU counters of /proc/stat.
type MachineCPU struct {
	Busy, Total int64 // clock ticks over all cores
	// IRQ is the hard and soft interrupt time, part of Busy. It is charged
	// to no process: loopback TCP delivery lands here.
	IRQ int64
}

// ReadMachineCPU reads the aggregate "cpu" line of /proc/stat: busy is
// user+nice+system+irq+softirq+steal, total adds idle and iowait.
func ReadMachineCPU() (MachineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return MachineCPU{}, fmt.Errorf("machine cpu: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return MachineCPU{}, errors.New("machine cpu: unexpected /proc/stat")
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(string(f[i+1]), 10, 64); err != nil {
			return MachineCPU{}, fmt.Errorf("machine cpu: %w", err)
		}
	}
	// user nice system idle iowait irq softirq steal
	busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return MachineCPU{Busy: busy, Total: busy + v[3] + v[4], IRQ: v[5] + v[6]}, nil
}

// ReadLoadAvg returns the 1-minute load average.
func ReadLoadAvg() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0, errors.New("empty /proc/loadavg")
	}
	return strconv.ParseFloat(string(f[0]), 64)
}

package suite

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bytedance/sonic"
)

// Target is the server under test as the scenarios see it.
type Target struct {
	// TCPAddr, WSAddr and HTTPAddr are host:port addresses.
	TCPAddr, WSAddr, HTTPAddr string
	// PID is the server's process id (for RSS and CPU); 0 if unknown.
	PID int
	// TCPAddrs and WSAddrs, when set, are every comet address of a
	// cluster (TCPAddr and WSAddr are then their first): the client
	// connections are spread over them round robin.
	TCPAddrs, WSAddrs []string
	// PIDs, when set, are every server process to measure (e.g. the
	// comets of a cluster): RSS and CPU are summed over them. PID is then
	// their first.
	PIDs []int
	// Secret is the JWT secret the workers mint tokens with.
	Secret string
	// AdminKey is sent to the push API when set.
	AdminKey string
	// UserIDs are existing users, one per connection.
	UserIDs []int64
}

// CometAddr returns the comet address of a transport.
func (t Target) CometAddr(transport string) string {
	if transport == "ws" {
		return t.WSAddr
	}
	return t.TCPAddr
}

// CometAddrs returns every comet address of a transport (at least
// CometAddr's, if set).
func (t Target) CometAddrs(transport string) []string {
	list, one := t.TCPAddrs, t.TCPAddr
	if transport == "ws" {
		list, one = t.WSAddrs, t.WSAddr
	}
	if len(list) > 0 {
		return list
	}
	if one == "" {
		return nil
	}
	return []string{one}
}

// CometAddrAt returns the address of connection number i: CometAddrs
// round robin.
func (t Target) CometAddrAt(transport string, i int) string {
	a := t.CometAddrs(transport)
	if len(a) == 0 {
		return ""
	}
	return a[i%len(a)]
}

// ServerPIDs returns every server process to measure: PIDs, or PID alone.
func (t Target) ServerPIDs() []int {
	if len(t.PIDs) > 0 {
		return t.PIDs
	}
	if t.PID > 0 {
		return []int{t.PID}
	}
	return nil
}

// ServerSpec says how to start a `goim standalone` for a run.
type ServerSpec struct {
	// Binary is the goim executable.
	Binary string
	// DataDir is the data directory; "" makes a temporary one removed by Stop.
	DataDir string
	// Users is how many users to seed (prefix UserPrefix, default "bench").
	Users      int
	UserPrefix string
	// Heartbeat is passed as --heartbeat when positive.
	Heartbeat time.Duration
	// LogLevel is passed as --log-level (default "warn").
	LogLevel string
	// ExtraArgs are appended to the standalone command line.
	ExtraArgs []string
	// ReadyTimeout bounds the wait for /readyz (default 60s).
	ReadyTimeout time.Duration
	// KeepLog, if set, is a file the server log is copied to when the
	// server stops (the temporary data directory is removed).
	KeepLog string
}

// Server is a `goim standalone` started by goim-bench.
type Server struct {
	Target
	Info    ServerInfo
	LogPath string

	cmd     *exec.Cmd
	keepLog string
	logFile *os.File
	dataDir string
	tempDir bool
	exited  chan struct{}
	waitErr error
}

// RandomSecret returns a random 64-character hex secret.
func RandomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// StartServer seeds users and starts `goim standalone` on free loopback
// ports, then waits until /readyz answers 200. The server's output goes to
// a log file in the data directory (Server.LogPath).
func StartServer(ctx context.Context, spec ServerSpec) (s *Server, err error) {
	if spec.LogLevel == "" {
		spec.LogLevel = "warn"
	}
	if spec.UserPrefix == "" {
		spec.UserPrefix = "bench"
	}
	if spec.ReadyTimeout <= 0 {
		spec.ReadyTimeout = 60 * time.Second
	}
	bin, err := filepath.Abs(spec.Binary)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("server binary: %w (build it with `go build -o bin/goim ./cmd/goim`)", err)
	}
	s = &Server{dataDir: spec.DataDir, keepLog: spec.KeepLog, exited: make(chan struct{})}
	if s.dataDir == "" {
		if s.dataDir, err = os.MkdirTemp("", "goim-bench-*"); err != nil {
			return nil, err
		}
		s.tempDir = true
	}
	defer func() {
		if err != nil {
			s.cleanup()
		}
	}()
	s.Secret = RandomSecret()
	if spec.Users > 0 {
		if s.UserIDs, err = SeedUsers(ctx, bin, s.dataDir, spec.Users, spec.UserPrefix); err != nil {
			return nil, err
		}
	}
	for _, a := range []*string{&s.TCPAddr, &s.WSAddr, &s.HTTPAddr} {
		if *a, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	args := []string{"standalone",
		"--data-dir", s.dataDir,
		"--http-addr", s.HTTPAddr,
		"--tcp-addr", s.TCPAddr,
		"--ws-addr", s.WSAddr,
		"--max-conns-per-ip", "0",
		"--log-level", spec.LogLevel,
	}
	if spec.Heartbeat > 0 {
		args = append(args, "--heartbeat", spec.Heartbeat.String())
	}
	args = append(args, spec.ExtraArgs...)
	s.LogPath = filepath.Join(s.dataDir, "server.log")
	if s.logFile, err = os.Create(s.LogPath); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, args...)
	// The secret travels in the environment, not on the command line.
	s.cmd.Env = append(os.Environ(), "GOIM_JWT_SECRET="+s.Secret)
	s.cmd.Stdout, s.cmd.Stderr = s.logFile, s.logFile
	// Its own process group: a Ctrl-C at the terminal reaches only
	// goim-bench, which then stops the server itself after the clients.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	s.PID = s.cmd.Process.Pid
	go func() { s.waitErr = s.cmd.Wait(); close(s.exited) }()
	s.Info = ServerInfo{Mode: "spawned", Binary: bin, Version: binaryVersion(ctx, bin), Args: args,
		TCPAddr: s.TCPAddr, WSAddr: s.WSAddr, HTTPAddr: s.HTTPAddr}

	rctx, cancel := context.WithTimeout(ctx, spec.ReadyTimeout)
	defer cancel()
	if err := WaitReady(rctx, s.HTTPAddr, s.exited); err != nil {
		_, _ = s.Stop(context.Background(), 5*time.Second)
		return nil, fmt.Errorf("server not ready: %w; log tail:\n%s", err, s.LogTail(2000))
	}
	return s, nil
}

// WaitReady polls GET /readyz until it answers 200, ctx is done or exited
// (may be nil) is closed.
func WaitReady(ctx context.Context, httpAddr string, exited <-chan struct{}) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + httpAddr + "/readyz"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("server exited")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopReport says how the server ended.
type StopReport struct {
	// Seconds from SIGTERM to exit.
	Seconds float64 `json:"seconds"`
	// Exit is "0" for a clean exit, else the exit status or signal.
	Exit string `json:"exit"`
	// Killed is true when the server did not exit in time and got SIGKILL.
	Killed bool `json:"killed,omitempty"`
}

// Stop sends SIGTERM, waits up to timeout for the exit, then SIGKILLs.
// It removes a temporary data directory.
func (s *Server) Stop(ctx context.Context, timeout time.Duration) (StopReport, error) {
	defer s.cleanup()
	var rep StopReport
	select {
	case <-s.exited:
		rep.Exit = exitString(s.waitErr)
		return rep, fmt.Errorf("server had already exited: %s", rep.Exit)
	default:
	}
	t0 := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return rep, fmt.Errorf("sigterm: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case <-s.exited:
	case <-t.C:
		rep.Killed = true
	case <-ctx.Done():
		rep.Killed = true
		err = ctx.Err()
	}
	if rep.Killed {
		_ = s.cmd.Process.Kill()
		<-s.exited
		err = errors.Join(err, fmt.Errorf("server did not exit within %v of SIGTERM; killed", timeout))
	}
	rep.Seconds = time.Since(t0).Seconds()
	rep.Exit = exitString(s.waitErr)
	if err == nil && rep.Exit != "0" {
		err = fmt.Errorf("server exited with %s", rep.Exit)
	}
	return rep, err
}

// LogTail returns the last n bytes of the server log.
func (s *Server) LogTail(n int64) string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return ""
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

func (s *Server) cleanup() {
	if s.logFile != nil {
		s.logFile.Close()
		s.logFile = nil
		if s.keepLog != "" {
			if b, err := os.ReadFile(s.LogPath); err == nil {
				if err := os.MkdirAll(filepath.Dir(s.keepLog), 0o755); err == nil {
					_ = os.WriteFile(s.keepLog, b, 0o644)
				}
			}
		}
	}
	if s.tempDir {
		os.RemoveAll(s.dataDir)
		s.tempDir = false
	}
}

func exitString(err error) string {
	if err == nil {
		return "0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "signal " + ws.Signal().String()
		}
		return fmt.Sprint(ee.ExitCode())
	}
	return err.Error()
}

func binaryVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// SeedUsers runs `goim users seed` on dataDir and returns the new user ids.
func SeedUsers(ctx context.Context, bin, dataDir string, n int, prefix string) ([]int64, error) {
	cmd := exec.CommandContext(ctx, bin, "users", "seed", "--count", fmt.Sprint(n), "--prefix", prefix, "--data-dir", dataDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("goim users seed: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	ids, err := ParseUserIDs(out)
	if err != nil {
		return nil, fmt.Errorf("goim users seed: %w", err)
	}
	if len(ids) != n {
		return nil, fmt.Errorf("goim users seed: got %d user ids, want %d", len(ids), n)
	}
	return ids, nil
}

// ParseUserIDs decodes {"user_ids": [...]}.
func ParseUserIDs(b []byte) ([]int64, error) {
	var v struct {
		UserIDs []int64 `json:"user_ids"`
	}
	if err := sonic.Unmarshal(bytes.TrimSpace(b), &v); err != nil {
		return nil, fmt.Errorf("decode user ids: %w", err)
	}
	return v.UserIDs, nil
}

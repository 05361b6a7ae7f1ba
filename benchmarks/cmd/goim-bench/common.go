package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/goimdev/goim/benchmarks/loadgen"
	"github.com/goimdev/goim/benchmarks/suite"
)

// maxConnsPerWorker keeps each worker process under the machine's
// 20,000 open-file limit with room to spare.
const maxConnsPerWorker = 15000

// commonFlags are the flags every load scenario takes.
type commonFlags struct {
	n, workers, perWorker int
	transport             string
	rate                  float64
	maxInFlight           int

	server     string
	serverArgs string
	heartbeat  time.Duration
	logLevel   string

	addr, wsAddr, httpAddr string
	pid                    int
	// addrs, wsAddrs and pids are the lists of a cluster (-addrs,
	// -ws-addrs, -pids); -addr, -ws-addr and -pid, if also given, come
	// first.
	addrs, wsAddrs, pids string
	// ctx is the run's context (set by open): finish marks the result
	// interrupted when it ended.
	ctx           context.Context
	secret, users string
	adminKey      string

	out       string
	noSave    bool
	logDir    string
	quietLoad float64
	quietWait time.Duration
	// runs counts sessions opened, naming the kept server logs.
	runs int
	// scenario names the kept server logs.
	scenario string
	// noPool: the scenario holds its connections in the driver (messaging
	// scenarios); no worker processes are started.
	noPool  bool
	started time.Time
}

func (f *commonFlags) register(fs *flag.FlagSet, defaultN int) {
	fs.IntVar(&f.n, "n", defaultN, "connections")
	fs.IntVar(&f.workers, "workers", 0, "worker processes (0: enough for -per-worker connections each, at least 1)")
	fs.IntVar(&f.perWorker, "per-worker", maxConnsPerWorker, "most connections per worker process")
	fs.StringVar(&f.transport, "transport", "tcp", "tcp or ws")
	fs.Float64Var(&f.rate, "rate", 3000, "connect rate, connections per second over all workers (0: unpaced)")
	fs.IntVar(&f.maxInFlight, "max-in-flight", 512, "handshakes in flight per worker")

	fs.StringVar(&f.server, "server", "bin/goim", "goim binary to start as `goim standalone` (ignored with -addr)")
	fs.StringVar(&f.serverArgs, "server-args", "", "extra standalone flags, space separated")
	fs.DurationVar(&f.heartbeat, "heartbeat", 10*time.Second, "--heartbeat of the started server (clients heartbeat at the announced interval)")
	fs.StringVar(&f.logLevel, "server-log-level", "warn", "--log-level of the started server")

	fs.StringVar(&f.addr, "addr", "", "comet TCP address of an already running server (skips starting one)")
	fs.StringVar(&f.wsAddr, "ws-addr", "", "comet WebSocket address of the running server")
	fs.StringVar(&f.httpAddr, "http", "", "HTTP address of the running server")
	fs.IntVar(&f.pid, "pid", 0, "process id of the running server (RSS and CPU)")
	fs.StringVar(&f.addrs, "addrs", "", "comet TCP addresses of a running cluster, comma separated: connections are spread over them round robin")
	fs.StringVar(&f.wsAddrs, "ws-addrs", "", "comet WebSocket addresses of a running cluster, comma separated (round robin)")
	fs.StringVar(&f.pids, "pids", "", "process ids of a running cluster's servers (e.g. every comet), comma separated: RSS and CPU are summed over them")
	fs.StringVar(&f.secret, "secret", "", "JWT secret of the running server (default $GOIM_JWT_SECRET)")
	fs.StringVar(&f.users, "users", "", "users of the running server: a file holding `goim users seed` output, or a range FIRST-LAST")
	fs.StringVar(&f.adminKey, "admin-key", "", "push API admin key of the running server (default $GOIM_ADMIN_KEY)")

	fs.StringVar(&f.out, "out", "benchmarks/results", "directory of the JSON result")
	fs.BoolVar(&f.noSave, "no-save", false, "do not write the JSON result")
	fs.Float64Var(&f.quietLoad, "quiet-load", 0, "before each run, wait until the 1-minute load average is below this (0: do not wait); for shared machines")
	fs.DurationVar(&f.quietWait, "quiet-wait", 15*time.Minute, "longest wait for -quiet-load")
	fs.StringVar(&f.logDir, "server-log-dir", filepath.Join(os.TempDir(), "goim-bench-logs"), "where the started server's log is kept after it stops")
}

func (f *commonFlags) validate() error {
	var errs []error
	if f.n <= 0 {
		errs = append(errs, errors.New("-n must be positive"))
	}
	if f.transport != loadgen.TransportTCP && f.transport != loadgen.TransportWS {
		errs = append(errs, fmt.Errorf("-transport %q: want tcp or ws", f.transport))
	}
	if f.perWorker <= 0 || f.perWorker > 19000 {
		errs = append(errs, errors.New("-per-worker must be in 1..19000 (the open-file limit is 20000 per process)"))
	}
	if _, err := f.pidList(); err != nil {
		errs = append(errs, err)
	}
	if f.addr != "" || f.addrs != "" || f.wsAddr != "" || f.wsAddrs != "" || f.httpAddr != "" {
		if f.httpAddr == "" || (len(f.tcpAddrList()) == 0 && f.transport == "tcp") || (len(f.wsAddrList()) == 0 && f.transport == "ws") {
			errs = append(errs, errors.New("an external server needs -http and -addr/-addrs (tcp) or -ws-addr/-ws-addrs (ws)"))
		}
		if f.users == "" {
			errs = append(errs, errors.New("an external server needs -users"))
		}
	}
	return errors.Join(errs...)
}

// tcpAddrList is -addr then -addrs.
func (f *commonFlags) tcpAddrList() []string {
	return append(loadgen.SplitAddrs(f.addr), loadgen.SplitAddrs(f.addrs)...)
}

// wsAddrList is -ws-addr then -ws-addrs.
func (f *commonFlags) wsAddrList() []string {
	return append(loadgen.SplitAddrs(f.wsAddr), loadgen.SplitAddrs(f.wsAddrs)...)
}

// pidList is -pid then -pids.
func (f *commonFlags) pidList() ([]int, error) {
	var out []int
	if f.pid > 0 {
		out = append(out, f.pid)
	}
	for _, s := range loadgen.SplitAddrs(f.pids) {
		p, err := strconv.Atoi(s)
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("-pids: bad process id %q", s)
		}
		out = append(out, p)
	}
	return out, nil
}

func (f *commonFlags) poolSize() int {
	return max(f.workers, (f.n+f.perWorker-1)/f.perWorker, 1)
}

// session is one server (started or attached) plus its worker pool.
type session struct {
	target suite.Target
	info   suite.ServerInfo
	server *suite.Server // nil for an external server
	pool   *loadgen.Pool
	stderr io.Writer
}

func (f *commonFlags) open(ctx context.Context, stderr io.Writer) (s *session, err error) {
	if err := f.waitQuiet(ctx, stderr); err != nil {
		return nil, err
	}
	f.ctx = ctx
	s = &session{stderr: stderr}
	if f.httpAddr != "" {
		tcp, ws := f.tcpAddrList(), f.wsAddrList()
		pids, err := f.pidList()
		if err != nil {
			return nil, err
		}
		s.target = suite.Target{TCPAddrs: tcp, WSAddrs: ws, HTTPAddr: f.httpAddr, PIDs: pids,
			Secret: firstNonEmpty(f.secret, os.Getenv("GOIM_JWT_SECRET")), AdminKey: firstNonEmpty(f.adminKey, os.Getenv("GOIM_ADMIN_KEY"))}
		if len(tcp) > 0 {
			s.target.TCPAddr = tcp[0]
		}
		if len(ws) > 0 {
			s.target.WSAddr = ws[0]
		}
		if len(pids) > 0 {
			s.target.PID = pids[0]
		}
		if s.target.UserIDs, err = loadUsers(f.users); err != nil {
			return nil, err
		}
		s.info = suite.ServerInfo{Mode: "external", TCPAddr: strings.Join(tcp, ","), WSAddr: strings.Join(ws, ","), HTTPAddr: f.httpAddr}
		if err := suite.WaitReady(ctx, f.httpAddr, nil); err != nil {
			return nil, fmt.Errorf("server at %s not ready: %w", f.httpAddr, err)
		}
	} else {
		fmt.Fprintf(stderr, "starting %s standalone with %d seeded users...\n", f.server, f.n)
		f.runs++
		keep := filepath.Join(f.logDir, fmt.Sprintf("%s-%s-run%d.log", f.scenario, f.started.UTC().Format("20060102T150405Z"), f.runs))
		srv, err := suite.StartServer(ctx, suite.ServerSpec{
			Binary: f.server, Users: f.n, Heartbeat: f.heartbeat, LogLevel: f.logLevel,
			ExtraArgs: strings.Fields(f.serverArgs), KeepLog: keep,
		})
		if err != nil {
			return nil, err
		}
		s.server, s.target, s.info = srv, srv.Target, srv.Info
		fmt.Fprintf(stderr, "server pid %d: tcp %s ws %s http %s (log kept in %s)\n", srv.PID, srv.TCPAddr, srv.WSAddr, srv.HTTPAddr, keep)
	}
	defer func() {
		if err != nil {
			s.close(stderr)
		}
	}()
	if f.noPool {
		return s, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if s.pool, err = loadgen.NewPool(ctx, f.poolSize(), loadgen.ExecSpawner(exe, []string{"worker"}, stderr)); err != nil {
		return nil, err
	}
	return s, nil
}

// close closes the connections, stops the workers and a started server
// (SIGTERM, then checks that it exits). It uses its own timeouts so that it
// also runs after an interrupt.
func (s *session) close(stderr io.Writer) *suite.StopReport {
	if s.pool != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if _, err := s.pool.CloseConns(ctx); err != nil {
			fmt.Fprintf(stderr, "close connections: %v\n", err)
		}
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
		if err := s.pool.Close(ctx); err != nil {
			fmt.Fprintf(stderr, "stop workers: %v\n", err)
		}
		cancel()
		s.pool = nil
	}
	if s.server == nil {
		return nil
	}
	fmt.Fprintf(stderr, "stopping server (SIGTERM)...\n")
	rep, err := s.server.Stop(context.Background(), 60*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "server stop: %v\nserver log tail:\n%s\n", err, s.server.LogTail(4000))
	}
	s.server = nil
	return &rep
}

// serverLogTail returns the end of a started server's log, for errors.
func (s *session) serverLogTail() string {
	if s.server == nil {
		return ""
	}
	return s.server.LogTail(4000)
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}

// loadUsers reads a `goim users seed` output file or a FIRST-LAST range.
func loadUsers(spec string) ([]int64, error) {
	if a, b, ok := strings.Cut(spec, "-"); ok {
		lo, err1 := strconv.ParseInt(a, 10, 64)
		hi, err2 := strconv.ParseInt(b, 10, 64)
		if err1 == nil && err2 == nil {
			if lo <= 0 || hi < lo || hi-lo > 10_000_000 {
				return nil, fmt.Errorf("-users %q: bad range", spec)
			}
			ids := make([]int64, 0, hi-lo+1)
			for id := lo; id <= hi; id++ {
				ids = append(ids, id)
			}
			return ids, nil
		}
	}
	b, err := os.ReadFile(spec)
	if err != nil {
		return nil, fmt.Errorf("-users: %w", err)
	}
	return suite.ParseUserIDs(b)
}

// finish saves (unless -no-save) and prints a result. A run whose context
// ended (SIGINT, SIGTERM) is marked interrupted: its partial figures are
// still printed and written.
func (f *commonFlags) finish(r *suite.Result, stdout, stderr io.Writer) error {
	r.FinishedAt = time.Now().UTC()
	if f.ctx != nil && f.ctx.Err() != nil && !r.Interrupted {
		r.Interrupted = true
		r.Notef("interrupted (SIGINT/SIGTERM) after %.0fs: partial result", r.FinishedAt.Sub(r.StartedAt).Seconds())
	}
	suite.PrintHuman(stdout, r)
	if f.noSave {
		return nil
	}
	path, err := r.Save(f.out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nresult: %s\n", path)
	return nil
}

// waitQuiet waits until the load average is below -quiet-load, at most
// -quiet-wait; past that it runs anyway (the result records the load).
func (f *commonFlags) waitQuiet(ctx context.Context, stderr io.Writer) error {
	if f.quietLoad <= 0 {
		return nil
	}
	deadline := time.Now().Add(f.quietWait)
	for {
		load, err := loadgen.ReadLoadAvg()
		if err != nil || load < f.quietLoad {
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(stderr, "load average still %.2f after %v; running anyway\n", load, f.quietWait)
			return nil
		}
		fmt.Fprintf(stderr, "\rwaiting for a quiet machine: load average %.2f >= %.2f   ", load, f.quietLoad)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

// cometAddrs is the address list of the chosen transport.
func (f *commonFlags) cometAddrs() []string {
	if f.transport == loadgen.TransportWS {
		return f.wsAddrList()
	}
	return f.tcpAddrList()
}

// Package devcluster starts a local GoIM cluster of real processes on one
// machine: comets, logics and jobs of the goim binary on the given MySQL and
// Redis, with Kafka (an in-process kfake cluster when no brokers are given)
// and etcd (an embedded server when no endpoints are given) held by the
// calling process. `goim cluster` (make cluster) runs it for users to try;
// the cluster tests use it to kill, stop and restart nodes while traffic
// flows.
package devcluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/goimdev/goim/internal/discovery/embedetcd"
	"github.com/goimdev/goim/internal/kfakeproc"
)

// Config describes the cluster. Zero counts take the defaults of `make
// cluster`: 2 comets, 1 logic, 2 jobs.
type Config struct {
	// Bin is the goim binary the nodes run. Required.
	Bin string
	// Dir holds the nodes' logs (<name>.log), data directories and the
	// embedded etcd's data. Required.
	Dir string
	// Comets, Logics and Jobs are the node counts.
	Comets, Logics, Jobs int
	// MySQLDSN is the store of record. Required.
	MySQLDSN string
	// RedisAddr is the Redis of the session registry and caches. Required.
	RedisAddr string
	// KafkaBrokers: empty starts a kfake cluster in this process.
	KafkaBrokers string
	// EtcdEndpoints: empty starts an embedded etcd in this process.
	EtcdEndpoints string
	// JWTSecret is shared by the logics (passed in the environment, never
	// on a command line). Empty: a random one (see Cluster.JWTSecret).
	JWTSecret string
	// Host is the address every listener binds. Default 127.0.0.1.
	Host string
	// Args are extra flags for every node, e.g. --heartbeat 5s.
	Args []string
	// LogicArgs, CometArgs and JobArgs are extra flags for one role.
	LogicArgs, CometArgs, JobArgs []string
	// ReadyTimeout bounds the wait for a node's /readyz. Default 30s.
	ReadyTimeout time.Duration
	// Log receives the cluster's own events. Default: discarded.
	Log *slog.Logger
}

// Node is one process of the cluster. Its ports stay the same across
// restarts.
type Node struct {
	Name string // comet-1, logic-1, job-1
	Role string // comet, logic or job
	RPC  string // RPC address (comet, logic)
	HTTP string // HTTP address: API on a logic; health and metrics on all
	TCP  string // client TCP address (comet)
	WS   string // client WebSocket address (comet)
	Log  string // log file

	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Cluster is a running local cluster.
type Cluster struct {
	cfg       Config
	jwt       string
	brokers   string
	endpoints string
	kafka     *kfakeproc.Cluster
	stopEtcd  func()
	nodes     []*Node
}

// Start starts the dependencies and the nodes (logics, then comets, then
// jobs), each waited for until its /readyz answers. On error everything
// started is stopped.
func Start(ctx context.Context, cfg Config) (c *Cluster, err error) {
	if cfg.Bin == "" || cfg.Dir == "" || cfg.MySQLDSN == "" || cfg.RedisAddr == "" {
		return nil, errors.New("devcluster: Bin, Dir, MySQLDSN and RedisAddr are required")
	}
	if cfg.Comets == 0 && cfg.Logics == 0 && cfg.Jobs == 0 {
		cfg.Comets, cfg.Logics, cfg.Jobs = 2, 1, 2
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	c = &Cluster{cfg: cfg, jwt: cfg.JWTSecret, brokers: cfg.KafkaBrokers, endpoints: cfg.EtcdEndpoints}
	defer func() {
		if err != nil {
			_ = c.Close(context.Background())
		}
	}()
	if c.jwt == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		c.jwt = hex.EncodeToString(b)
	}
	if c.brokers == "" {
		port, err := freePort(cfg.Host)
		if err != nil {
			return nil, err
		}
		if c.kafka, err = kfakeproc.Start(net.JoinHostPort(cfg.Host, port), 8); err != nil {
			return nil, err
		}
		c.brokers = c.kafka.Addr()
		cfg.Log.Info("kfake started", "addr", c.brokers)
	}
	if c.endpoints == "" {
		port, err := freePort(cfg.Host)
		if err != nil {
			return nil, err
		}
		eps, stop, err := embedetcd.Start(filepath.Join(cfg.Dir, "etcd"), "http://"+net.JoinHostPort(cfg.Host, port))
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: %w", err)
		}
		c.stopEtcd = stop
		c.endpoints = strings.Join(eps, ",")
		cfg.Log.Info("embedded etcd started", "endpoint", c.endpoints)
	}
	for _, role := range []struct {
		name string
		n    int
	}{{"logic", cfg.Logics}, {"comet", cfg.Comets}, {"job", cfg.Jobs}} {
		for i := 1; i <= role.n; i++ {
			n, err := c.newNode(role.name, i)
			if err != nil {
				return nil, err
			}
			c.nodes = append(c.nodes, n)
			if err := c.startNode(ctx, n); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

func freePort(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}

func (c *Cluster) addr() (string, error) {
	p, err := freePort(c.cfg.Host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(c.cfg.Host, p), nil
}

func (c *Cluster) newNode(role string, i int) (*Node, error) {
	var extra []string // the role's own flags
	n := &Node{Name: role + "-" + strconv.Itoa(i), Role: role}
	n.Log = filepath.Join(c.cfg.Dir, n.Name+".log")
	var err error
	if n.HTTP, err = c.addr(); err != nil {
		return nil, err
	}
	args := []string{role, "--http-addr", n.HTTP, "--data-dir", filepath.Join(c.cfg.Dir, n.Name),
		"--etcd-endpoints", c.endpoints, "--redis-addr", c.cfg.RedisAddr, "--log-format", "json"}
	switch role {
	case "logic":
		if n.RPC, err = c.addr(); err != nil {
			return nil, err
		}
		args = append(args, "--rpc-addr", n.RPC, "--logic-node", n.Name, "--snowflake-node", strconv.Itoa(i),
			"--store", "mysql", "--mysql-dsn", c.cfg.MySQLDSN, "--kafka-brokers", c.brokers)
		extra = c.cfg.LogicArgs
	case "comet":
		for _, p := range []*string{&n.RPC, &n.TCP, &n.WS} {
			if *p, err = c.addr(); err != nil {
				return nil, err
			}
		}
		args = append(args, "--rpc-addr", n.RPC, "--node", n.Name, "--tcp-addr", n.TCP, "--ws-addr", n.WS,
			"--max-conns-per-ip", "0")
		extra = c.cfg.CometArgs
	case "job":
		args = append(args, "--kafka-brokers", c.brokers, "--store", "mysql", "--mysql-dsn", c.cfg.MySQLDSN)
		extra = c.cfg.JobArgs
	}
	// The role's flags come last: they override the common ones.
	n.args = append(append(args, c.cfg.Args...), extra...)
	return n, nil
}

// startNode starts n's process and waits for its /readyz.
func (c *Cluster) startNode(ctx context.Context, n *Node) error {
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.cfg.Bin, n.args...)
	cmd.Env = append(os.Environ(), "GOIM_JWT_SECRET="+c.jwt, "GOGC=50")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	c.cfg.Log.Info("node started", "node", n.Name, "pid", cmd.Process.Pid)
	return c.waitReady(ctx, n, done)
}

func (c *Cluster) waitReady(ctx context.Context, n *Node, done chan struct{}) error {
	deadline := time.Now().Add(c.cfg.ReadyTimeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get("http://" + n.HTTP + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before it was ready; its log %s ends with:\n%s", n.Name, n.Log, tail(n.Log, 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; its log %s ends with:\n%s", n.Name, c.cfg.ReadyTimeout, n.Log, tail(n.Log, 20))
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	out := ""
	for _, l := range lines {
		out += l + "\n"
	}
	return out
}

// JWTSecret returns the secret the logics sign tokens with.
func (c *Cluster) JWTSecret() string { return c.jwt }

// KafkaBrokers returns the brokers the nodes use.
func (c *Cluster) KafkaBrokers() string { return c.brokers }

// EtcdEndpoints returns the etcd endpoints the nodes use.
func (c *Cluster) EtcdEndpoints() string { return c.endpoints }

// Nodes returns the nodes of a role ("" for all), in start order.
func (c *Cluster) Nodes(role string) []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if role == "" || n.Role == role {
			out = append(out, n)
		}
	}
	return out
}

// Running reports whether n's process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Pid returns the process id of n's current process (0 when not running).
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// signal sends sig to n and waits, up to wait, for the process to exit.
func (n *Node) signal(sig syscall.Signal, wait time.Duration) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit within %s of %s; killed", n.Name, wait, sig)
	}
}

// Kill SIGKILLs n and waits for it to be gone.
func (c *Cluster) Kill(n *Node) error {
	c.cfg.Log.Info("kill", "node", n.Name)
	return n.signal(syscall.SIGKILL, 10*time.Second)
}

// Stop SIGTERMs n (graceful drain) and waits up to wait for it to exit.
func (c *Cluster) Stop(n *Node, wait time.Duration) error {
	c.cfg.Log.Info("stop", "node", n.Name)
	return n.signal(syscall.SIGTERM, wait)
}

// Restart starts n again (same ports and flags) once it is stopped, and
// waits for it to be ready.
func (c *Cluster) Restart(ctx context.Context, n *Node) error {
	if n.Running() {
		return fmt.Errorf("%s is running", n.Name)
	}
	return c.startNode(ctx, n)
}

// Close stops every node gracefully (comets first, so that their clients
// are told; then jobs, then logics), then the embedded dependencies.
func (c *Cluster) Close(ctx context.Context) error {
	var errs []error
	wait := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	for _, role := range []string{"comet", "job", "logic"} {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, n := range c.Nodes(role) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Stop(n, wait); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	if c.stopEtcd != nil {
		c.stopEtcd()
	}
	if c.kafka != nil {
		c.kafka.Close()
	}
	return errors.Join(errs...)
}

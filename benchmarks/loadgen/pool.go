package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bytedance/sonic"
)

// WorkerConn is a started worker as the driver sees it.
type WorkerConn struct {
	// In carries requests; closing it asks the worker to close its
	// connections and exit.
	In io.WriteCloser
	// Out carries replies and progress events.
	Out io.Reader
	// Wait waits for the worker to exit (after In is closed).
	Wait func() error
	// Kill ends the worker at once.
	Kill func()
	// PID is the worker's process id, 0 for an in-process worker.
	PID int
}

// Spawner starts worker number id.
type Spawner func(ctx context.Context, id int) (WorkerConn, error)

// ExecSpawner starts workers as child processes: path with args, then
// "-id", the worker number. The children's stderr goes to stderr. They run
// in their own process group, so that a Ctrl-C at the terminal reaches only
// the driver, which then stops them in order (Pool.Connect's cancel,
// CloseConns, Close); they exit when their stdin closes, also when the
// driver dies.
func ExecSpawner(path string, args []string, stderr io.Writer) Spawner {
	return func(ctx context.Context, id int) (WorkerConn, error) {
		cmd := exec.Command(path, append(append([]string(nil), args...), "-id", fmt.Sprint(id))...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Stderr = stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return WorkerConn{}, fmt.Errorf("worker %d: %w", id, err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return WorkerConn{}, fmt.Errorf("worker %d: %w", id, err)
		}
		if err := cmd.Start(); err != nil {
			return WorkerConn{}, fmt.Errorf("worker %d: start: %w", id, err)
		}
		return WorkerConn{
			In:   in,
			Out:  out,
			Wait: cmd.Wait,
			Kill: func() { _ = cmd.Process.Kill() },
			PID:  cmd.Process.Pid,
		}, nil
	}
}

// InProcessSpawner runs workers as goroutines of this process, speaking the
// same JSON-lines protocol over pipes (tests, small runs).
func InProcessSpawner(log *slog.Logger) Spawner {
	return func(ctx context.Context, id int) (WorkerConn, error) {
		reqR, reqW := io.Pipe()
		repR, repW := io.Pipe()
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() {
			err := Serve(wctx, id, reqR, repW, log)
			repW.CloseWithError(io.EOF)
			reqR.Close()
			done <- err
		}()
		var once sync.Once
		var werr error
		wait := func() error {
			once.Do(func() { werr = <-done; cancel() })
			return werr
		}
		return WorkerConn{In: reqW, Out: repR, Wait: wait, Kill: cancel}, nil
	}
}

// Pool is the driver's set of workers.
type Pool struct {
	workers []*workerHandle
}

type workerHandle struct {
	id       int
	wc       WorkerConn
	wmu      sync.Mutex // serialises request lines
	nextID   atomic.Int64
	mu       sync.Mutex
	pending  map[int64]chan message
	progress atomic.Pointer[Progress]
	done     chan struct{} // closed when the reply reader ends
	readErr  error
}

// NewPool starts n workers with spawn.
func NewPool(ctx context.Context, n int, spawn Spawner) (*Pool, error) {
	if n <= 0 {
		return nil, errors.New("pool: need at least one worker")
	}
	p := &Pool{}
	for i := range n {
		wc, err := spawn(ctx, i)
		if err != nil {
			p.Close(context.Background())
			return nil, err
		}
		h := &workerHandle{id: i, wc: wc, pending: map[int64]chan message{}, done: make(chan struct{})}
		go h.readReplies()
		p.workers = append(p.workers, h)
	}
	return p, nil
}

// Size returns the number of workers.
func (p *Pool) Size() int { return len(p.workers) }

// PIDs returns the workers' process ids (0 for in-process workers).
func (p *Pool) PIDs() []int {
	out := make([]int, len(p.workers))
	for i, w := range p.workers {
		out[i] = w.wc.PID
	}
	return out
}

func (h *workerHandle) readReplies() {
	defer close(h.done)
	sc := bufio.NewScanner(h.wc.Out)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		var m message
		if err := sonic.Unmarshal(sc.Bytes(), &m); err != nil {
			h.readErr = fmt.Errorf("worker %d: bad line: %w", h.id, err)
			return
		}
		switch m.Type {
		case msgProgress:
			if m.Progress != nil {
				h.progress.Store(m.Progress)
			}
		case msgReply:
			h.mu.Lock()
			ch := h.pending[m.ID]
			delete(h.pending, m.ID)
			h.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}
	h.readErr = sc.Err()
	if h.readErr == nil {
		h.readErr = fmt.Errorf("worker %d: exited", h.id)
	}
}

// notify writes a request that has no reply (cancel).
func (h *workerHandle) notify(r request) error {
	b, err := sonic.Marshal(r)
	if err != nil {
		return fmt.Errorf("worker %d: encode: %w", h.id, err)
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if _, err := h.wc.In.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("worker %d: send %s: %w", h.id, r.Cmd, err)
	}
	return nil
}

func (h *workerHandle) call(ctx context.Context, r request) (message, error) {
	r.ID = h.nextID.Add(1)
	ch := make(chan message, 1)
	h.mu.Lock()
	h.pending[r.ID] = ch
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.pending, r.ID)
		h.mu.Unlock()
	}()
	b, err := sonic.Marshal(r)
	if err != nil {
		return message{}, fmt.Errorf("worker %d: encode: %w", h.id, err)
	}
	h.wmu.Lock()
	_, err = h.wc.In.Write(append(b, '\n'))
	h.wmu.Unlock()
	if err != nil {
		return message{}, fmt.Errorf("worker %d: send %s: %w", h.id, r.Cmd, err)
	}
	select {
	case m := <-ch:
		if m.Error != "" {
			return m, fmt.Errorf("worker %d: %s: %s", h.id, r.Cmd, m.Error)
		}
		return m, nil
	case <-h.done:
		return message{}, fmt.Errorf("worker %d: %s: %w", h.id, r.Cmd, h.readErr)
	case <-ctx.Done():
		return message{}, fmt.Errorf("worker %d: %s: %w", h.id, r.Cmd, ctx.Err())
	}
}

// all runs one request per worker at once and sums the stats of the replies.
func (p *Pool) all(ctx context.Context, mk func(i int) request) (Stats, error) {
	replies := make([]message, len(p.workers))
	errs := make([]error, len(p.workers))
	var wg sync.WaitGroup
	for i, h := range p.workers {
		wg.Go(func() { replies[i], errs[i] = h.call(ctx, mk(i)) })
	}
	wg.Wait()
	var sum Stats
	for _, m := range replies {
		if m.Stats != nil {
			sum.Add(*m.Stats)
		}
	}
	return sum, errors.Join(errs...)
}

// Split divides ids into n contiguous parts whose sizes differ by at most one.
func Split(ids []int64, n int) [][]int64 {
	out := make([][]int64, n)
	for i := range n {
		lo, hi := len(ids)*i/n, len(ids)*(i+1)/n
		out[i] = ids[lo:hi]
	}
	return out
}

// Connect splits spec.UserIDs and spec.Rate evenly between the workers and
// waits until every worker has finished its handshakes. onProgress, if not
// nil, is called every interval with the sum of the workers' progress.
//
// spec.Addr may list several comet addresses ("h:p,h:p"): connection
// number i (over all workers) goes to address i mod len, round robin.
//
// When ctx ends first, the workers are told to cancel their ramp (no new
// handshake; those under way are aborted) and Connect still waits, at most
// 20 s, for their replies: it returns the partial stats (the
// connections that did authenticate stay open, for the caller to close)
// and an error wrapping ctx.Err().
func (p *Pool) Connect(ctx context.Context, spec ConnectSpec, interval time.Duration, onProgress func(Progress)) (Stats, error) {
	parts := Split(spec.UserIDs, len(p.workers))
	first := make([]int, len(parts))
	for i := 1; i < len(parts); i++ {
		first[i] = first[i-1] + len(parts[i-1])
	}
	for _, h := range p.workers {
		h.progress.Store(nil)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if onProgress != nil && interval > 0 {
		wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					onProgress(p.progress())
				}
			}
		})
	}
	// The calls outlive ctx by up to cancelWait, so that an interrupted
	// ramp still reports what it did.
	callCtx, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()
	finished := make(chan struct{})
	wg.Go(func() {
		select {
		case <-finished:
		case <-ctx.Done():
			for _, h := range p.workers {
				_ = h.notify(request{Cmd: cmdCancel})
			}
			select {
			case <-finished:
			case <-time.After(cancelWait):
				cancelCalls()
			}
		}
	})
	st, err := p.all(callCtx, func(i int) request {
		s := spec
		s.UserIDs = parts[i]
		s.Rate = spec.Rate / float64(len(p.workers))
		s.Addr = rotateAddrs(spec.Addr, first[i])
		return request{Cmd: cmdConnect, Connect: &s}
	})
	close(finished)
	close(stop)
	wg.Wait()
	if onProgress != nil {
		onProgress(p.progress())
	}
	if ctx.Err() != nil {
		return st, fmt.Errorf("connect interrupted after %d of %d connections: %w", st.Authed, len(spec.UserIDs), ctx.Err())
	}
	return st, err
}

// cancelWait bounds how long an interrupted Connect waits for the workers
// to report (their handshakes under way are aborted at once).
const cancelWait = 20 * time.Second

func (p *Pool) progress() Progress {
	var sum Progress
	sum.Worker = -1
	for _, h := range p.workers {
		if pr := h.progress.Load(); pr != nil {
			sum.Attempted += pr.Attempted
			sum.Authed += pr.Authed
			sum.Failed += pr.Failed
			sum.Target += pr.Target
		}
	}
	return sum
}

// Stats returns the sum of the workers' stats; reset zeroes their delivery
// counters and latency histograms after the snapshot.
func (p *Pool) Stats(ctx context.Context, reset bool) (Stats, error) {
	return p.all(ctx, func(int) request { return request{Cmd: cmdStats, Reset: reset} })
}

// CloseConns closes every worker's connections and returns the final stats.
func (p *Pool) CloseConns(ctx context.Context) (Stats, error) {
	return p.all(ctx, func(int) request { return request{Cmd: cmdCloseConns} })
}

// Close asks every worker to exit (closing its input) and waits for them
// until ctx is done; then it kills those still running.
func (p *Pool) Close(ctx context.Context) error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, h := range p.workers {
		wg.Go(func() {
			_ = h.wc.In.Close()
			exited := make(chan error, 1)
			go func() { exited <- h.wc.Wait() }()
			var err error
			select {
			case err = <-exited:
			case <-ctx.Done():
				h.wc.Kill()
				err = fmt.Errorf("worker %d: killed: %w", h.id, ctx.Err())
				<-exited
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ServeMain is the body of the `worker` subcommand: it serves the driver
// on stdin and stdout and logs to stderr.
func ServeMain(ctx context.Context, id int) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("worker", id)
	return Serve(ctx, id, os.Stdin, os.Stdout, log)
}

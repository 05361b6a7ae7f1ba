package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/bytedance/sonic"
)

// Serve runs a worker that takes requests as JSON lines from in and writes
// replies and progress events as JSON lines to out, until in ends or ctx is
// done; then it closes its connections and returns. It is the body of
// `goim-bench worker` and of in-process workers.
func Serve(ctx context.Context, id int, in io.Reader, out io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := NewWorker(id, log)
	defer w.CloseConns()

	var outMu sync.Mutex
	send := func(m message) error {
		b, err := sonic.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		b = append(b, '\n')
		outMu.Lock()
		defer outMu.Unlock()
		_, err = out.Write(b)
		return err
	}

	// Each request runs under its own context, made by the reader before
	// the request is handed over, so that a cancel line read after it
	// always reaches it (even before the loop took it up). A cancel line
	// cancels every request not finished yet.
	reqs := make(chan *job)
	readErr := make(chan error, 1)
	var opMu sync.Mutex
	open := map[*job]struct{}{}
	finish := func(j *job) {
		j.cancel()
		opMu.Lock()
		delete(open, j)
		opMu.Unlock()
	}
	go func() {
		defer close(reqs)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		for sc.Scan() {
			var r request
			if err := sonic.Unmarshal(sc.Bytes(), &r); err != nil {
				readErr <- fmt.Errorf("bad request line: %w", err)
				cancel()
				return
			}
			if r.Cmd == cmdCancel {
				opMu.Lock()
				for j := range open {
					j.cancel()
				}
				opMu.Unlock()
				continue
			}
			j := &job{r: r}
			j.ctx, j.cancel = context.WithCancel(ctx)
			opMu.Lock()
			open[j] = struct{}{}
			opMu.Unlock()
			select {
			case reqs <- j:
			case <-ctx.Done():
				finish(j)
				return
			}
		}
		readErr <- sc.Err()
		// The driver closed our input (or died): stop whatever runs.
		cancel()
	}()

	for {
		var j *job
		var ok bool
		select {
		case <-ctx.Done():
		case j, ok = <-reqs:
		}
		if !ok {
			select {
			case err := <-readErr:
				return err
			default:
				return nil
			}
		}
		r := j.r
		reply := message{Type: msgReply, ID: r.ID}
		switch r.Cmd {
		case cmdConnect:
			if r.Connect == nil {
				reply.Error = "connect without spec"
				break
			}
			err := w.Connect(j.ctx, *r.Connect, func(p Progress) {
				_ = send(message{Type: msgProgress, Progress: &p})
			})
			if err != nil {
				reply.Error = err.Error()
			}
			st := w.Stats(false)
			reply.Stats = &st
		case cmdStats:
			st := w.Stats(r.Reset)
			reply.Stats = &st
		case cmdCloseConns:
			w.CloseConns()
			st := w.Stats(false)
			reply.Stats = &st
		default:
			reply.Error = fmt.Sprintf("unknown command %q", r.Cmd)
		}
		finish(j)
		if err := send(reply); err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				return nil
			}
			return fmt.Errorf("worker %d: write reply: %w", id, err)
		}
	}
}

// cmdCancel asks a worker to abandon the request it is running (a connect
// ramp): handshakes not yet started are skipped, those under way are
// aborted, and the request's reply carries the stats so far. It has no
// reply of its own.
const cmdCancel = "cancel"

// job is a request with the context it runs under.
type job struct {
	ctx    context.Context
	cancel context.CancelFunc
	r      request
}

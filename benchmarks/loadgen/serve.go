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

	reqs := make(chan request)
	readErr := make(chan error, 1)
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
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
		// The driver closed our input (or died): stop whatever runs.
		cancel()
	}()

	for {
		var r request
		var ok bool
		select {
		case <-ctx.Done():
		case r, ok = <-reqs:
		}
		if !ok {
			select {
			case err := <-readErr:
				return err
			default:
				return nil
			}
		}
		reply := message{Type: msgReply, ID: r.ID}
		switch r.Cmd {
		case cmdConnect:
			if r.Connect == nil {
				reply.Error = "connect without spec"
				break
			}
			err := w.Connect(ctx, *r.Connect, func(p Progress) {
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
		if err := send(reply); err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				return nil
			}
			return fmt.Errorf("worker %d: write reply: %w", id, err)
		}
	}
}

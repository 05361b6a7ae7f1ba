package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/goimdev/goim/internal/opshttp"
)

// opsServer is a process's HTTP server (internal/opshttp): health, readiness,
// metrics, and the logic's API when api is set.
type opsServer struct {
	ln    net.Listener
	srv   *http.Server
	done  chan error
	ready atomic.Bool
}

func startOps(addr string, api http.Handler, log *slog.Logger) (*opsServer, error) {
	o := &opsServer{done: make(chan error, 1)}
	o.srv = opshttp.Server(opshttp.Handler(api, &o.ready), log)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	o.ln = ln
	go func() { o.done <- o.srv.Serve(ln) }()
	return o, nil
}

func (o *opsServer) addr() string { return o.ln.Addr().String() }

func (o *opsServer) stop(ctx context.Context) error {
	o.ready.Store(false)
	err := o.srv.Shutdown(ctx)
	if serr := <-o.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	kserver "github.com/cloudwego/kitex/server"
)

// ServerConfig configures a LogicServer or CometServer. The zero value is
// usable.
type ServerConfig struct {
	// ExitWait bounds how long Stop waits for the calls in flight before it
	// closes the connections. Default 5s.
	ExitWait time.Duration
	// Logger receives start and stop errors. Default slog.Default().
	Logger *slog.Logger
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.ExitWait <= 0 {
		c.ExitWait = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// server runs one Kitex server on a listener of its own. Kitex's own exit
// signal handling (it would stop the server on SIGTERM by itself) is
// replaced by Stop, so that the process decides when to drain.
type server struct {
	name     string
	cfg      ServerConfig
	ln       net.Listener
	ks       kserver.Server
	exit     chan error
	done     chan struct{} // closed when Run has returned
	stopOnce sync.Once
	runErr   error

	mu       sync.Mutex
	inflight int
	idle     *sync.Cond // signalled when inflight drops to 0
}

// listen binds addr ("host:port"; port 0 picks a free port).
func listen(name, addr string, cfg ServerConfig, build func(opts ...kserver.Option) kserver.Server) (*server, error) {
	cfg = cfg.withDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: %s server: listen %s: %w", name, addr, err)
	}
	s := &server{name: name, cfg: cfg, ln: ln, exit: make(chan error, 1), done: make(chan struct{})}
	s.idle = sync.NewCond(&s.mu)
	s.ks = build(
		kserver.WithListener(ln),
		kserver.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: "goim." + name}),
		kserver.WithExitWaitTime(cfg.ExitWait),
		kserver.WithExitSignal(func() <-chan error { return s.exit }),
		kserver.WithMiddleware(s.track),
	)
	go s.run()
	return s, nil
}

func (s *server) run() {
	defer close(s.done)
	if err := s.ks.Run(); err != nil {
		s.runErr = err
		s.cfg.Logger.Error("rpc server stopped", "component", "rpc", "service", s.name, "err", err)
	}
}

// track counts the calls in flight so that stop can wait for them.
func (s *server) track(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req, resp any) error {
		s.mu.Lock()
		s.inflight++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inflight--
			if s.inflight == 0 {
				s.idle.Broadcast()
			}
			s.mu.Unlock()
		}()
		return next(ctx, req, resp)
	}
}

func (s *server) addr() net.Addr { return s.ln.Addr() }

// stop stops accepting connections, waits for the calls in flight (at most
// ExitWait, or until ctx ends) and closes the connections.
func (s *server) stop(ctx context.Context) error {
	s.stopOnce.Do(func() { s.exit <- nil })
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("rpc: %s server: stop: %w", s.name, ctx.Err())
	}
	// Kitex has waited for the connections to become idle; a handler that
	// outlived ExitWait may still run: wait for it within ctx.
	waited := make(chan struct{})
	go func() {
		s.mu.Lock()
		for s.inflight > 0 {
			s.idle.Wait()
		}
		s.mu.Unlock()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		return fmt.Errorf("rpc: %s server: stop: %w", s.name, ctx.Err())
	}
	if s.runErr != nil && !errors.Is(s.runErr, net.ErrClosed) {
		return fmt.Errorf("rpc: %s server: %w", s.name, s.runErr)
	}
	return nil
}

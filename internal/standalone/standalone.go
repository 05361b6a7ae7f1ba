// Package standalone assembles the one-process GoIM server: comet, logic and
// job in one process on the embedded backends (SQLite store, in-process bus,
// in-memory session registry). It is what `goim standalone` runs and what the
// end-to-end tests start.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/msgcache"
	"github.com/goimdev/goim/internal/opshttp"
	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/job"
	"github.com/goimdev/goim/logic"
)

// Server is a running one-process GoIM.
type Server struct {
	cfg   config.Config
	log   *slog.Logger
	store store.Store
	cache *relcache.Cache

	closeCaches func() error // the relation, message and unread caches
	issuer      *auth.Issuer
	bus         bus.Bus
	logic       *logic.Service
	job         *job.Job
	comet       *comet.Server
	http        *http.Server
	httpLn      net.Listener

	// msgCache is the recent-message cache (nil when disabled).
	msgCache *msgcache.Cache

	ready    atomic.Bool
	httpDone chan error
	cancel   context.CancelFunc

	shutdownOnce sync.Once
	shutdownErr  error
}

// New builds the server from cfg; it opens the data directory but listens on
// nothing until Start.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (s *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s = &Server{cfg: cfg, log: log, httpDone: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.closeBackends()
		}
	}()
	secret := []byte(cfg.JWTSecret)
	if len(secret) == 0 {
		if secret, err = auth.LoadOrCreateSecret(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	if s.issuer, err = auth.NewIssuer(secret, "goim"); err != nil {
		return nil, err
	}
	if s.store, err = cfg.OpenStore(ctx); err != nil {
		return nil, fmt.Errorf("store (%s): %w", cfg.Store.Driver, err)
	}
	caches, closeCaches, err := cfg.OpenCaches(s.store, log)
	if err != nil {
		return nil, err
	}
	s.closeCaches = closeCaches
	s.cache, s.msgCache = caches.Relations, caches.Messages
	sessions := session.NewMemory(session.MemoryConfig{SessionTTL: sessionTTL(cfg.Comet.Heartbeat)})
	s.bus = bus.NewMemory(bus.MemoryConfig{})

	// One node, one heartbeat: the comet's settings are the ones clients see.
	cfg.Logic.Node = cfg.Comet.Node
	cfg.Logic.HeartbeatInterval = cfg.Comet.Heartbeat
	if s.logic, err = logic.New(cfg.Logic, logic.Deps{Store: s.store, Issuer: s.issuer, Sessions: sessions, Bus: s.bus, Cache: caches.Relations, MessageCache: caches.MessageCache(), Unread: caches.UnreadCounter()}, log); err != nil {
		return nil, err
	}
	if s.comet, err = comet.New(cfg.Comet, s.logic, log); err != nil {
		return nil, err
	}
	comets := job.NewStaticComets()
	comets.Set(s.comet.Node(), s.comet)
	if s.job, err = job.New(cfg.Job, job.Deps{Bus: s.bus, Sessions: sessions, Comets: comets}, log.With("component", "job")); err != nil {
		return nil, err
	}

	s.http = opshttp.Server(opshttp.Handler(s.logic.Handler(), &s.ready), log)
	return s, nil
}

// sessionTTL is the session registry's SessionTTL for a comet heartbeat
// interval (0: the comet's default): at least 3 intervals, since the comet
// refreshes a session at most once per interval and closes a connection
// silent for 3.
func sessionTTL(heartbeat time.Duration) time.Duration {
	if heartbeat <= 0 {
		heartbeat = comet.DefaultConfig().Heartbeat
	}
	return max(session.DefaultMemoryConfig().SessionTTL, 3*heartbeat)
}

// Start starts the job stage, the comet listeners and the HTTP server. It
// does not block.
func (s *Server) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := s.job.Start(ctx); err != nil {
		return fmt.Errorf("job: %w", err)
	}
	if err := s.comet.Start(); err != nil {
		return fmt.Errorf("comet: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	s.httpLn = ln
	go func() { s.httpDone <- s.http.Serve(ln) }()
	s.ready.Store(true)
	s.log.Info("goim standalone ready", "node", s.comet.Node(), "tcp", addrString(s.comet.TCPAddr()),
		"ws", addrString(s.comet.WSAddr()), "http", ln.Addr().String(), "data_dir", s.cfg.DataDir)
	return nil
}

// HTTPAddr returns the bound HTTP address (after Start).
func (s *Server) HTTPAddr() net.Addr { return s.httpLn.Addr() }

// TCPAddr returns the bound comet TCP address, or nil.
func (s *Server) TCPAddr() net.Addr { return s.comet.TCPAddr() }

// WSAddr returns the bound comet WebSocket address, or nil.
func (s *Server) WSAddr() net.Addr { return s.comet.WSAddr() }

// Comet returns the comet server (tests, benchmarks).
func (s *Server) Comet() *comet.Server { return s.comet }

// Cache returns the relation cache (tests, benchmarks).
func (s *Server) Cache() *relcache.Cache { return s.cache }

// MessageCache returns the recent-message cache, nil when disabled (tests,
// benchmarks).
func (s *Server) MessageCache() *msgcache.Cache { return s.msgCache }

// Issuer returns the token issuer (tests, benchmarks).
func (s *Server) Issuer() *auth.Issuer { return s.issuer }

// Shutdown drains clients (Op 6 server_draining), stops HTTP, lets the job
// stage finish in-flight pushes and closes the backends. Later calls return
// the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.ready.Store(false)
	var errs []error
	if err := s.comet.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("comet: %w", err))
	}
	if s.httpLn != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
		if err := <-s.httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	}
	// No more sends can arrive: commit what is queued and publish its
	// events before the job stage drains.
	if err := s.logic.Close(); err != nil {
		errs = append(errs, fmt.Errorf("logic: %w", err))
	}
	if err := s.job.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("job: %w", err))
	}
	if s.cancel != nil {
		s.cancel()
	}
	errs = append(errs, s.closeBackends())
	return errors.Join(errs...)
}

func (s *Server) closeBackends() error {
	var errs []error
	if s.bus != nil {
		errs = append(errs, s.bus.Close())
	}
	if s.closeCaches != nil {
		errs = append(errs, s.closeCaches())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}

func addrString(a net.Addr) string {
	if a == nil {
		return "disabled"
	}
	return a.String()
}

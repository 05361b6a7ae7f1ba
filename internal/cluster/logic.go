package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/discovery"
	"github.com/goimdev/goim/internal/rpc"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/logic"
)

// Logic is a running `goim logic`: the HTTP API and the logic service,
// served to the comets over RPC, on MySQL, Redis and Kafka. Validated
// messages go to Kafka; the jobs persist them.
type Logic struct {
	cfg     config.Config
	log     *slog.Logger
	disco   *disco
	svc     *logic.Service
	rpc     *rpc.LogicServer
	ops     *opsServer
	closers []func() error

	dereg        func(context.Context) error
	shutdownOnce sync.Once
	shutdownErr  error
}

// domain is the logic service on the shared backends, as a logic and a job
// process build it.
type domain struct {
	svc      *logic.Service
	bus      bus.Bus
	sessions session.Registry
}

// openDomain opens the store (migrating it), Redis (session registry,
// relation and message caches) and Kafka, and builds the logic service on
// them. Every close function is appended to closers.
func openDomain(ctx context.Context, cfg config.Config, secret []byte, log *slog.Logger, closers *[]func() error) (*domain, error) {
	if cfg.Store.Driver != "mysql" {
		return nil, errors.New("the distributed mode needs store.driver mysql (--store mysql --mysql-dsn ...): the processes share the store")
	}
	issuer, err := auth.NewIssuer(secret, "goim")
	if err != nil {
		return nil, err
	}
	st, err := cfg.OpenStore(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	*closers = append(*closers, st.Close)
	rdb, err := openRedis(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	*closers = append(*closers, rdb.Close)
	d := &domain{}
	if d.sessions, err = openSessions(rdb, &cfg); err != nil {
		return nil, err
	}
	cfg.Cache.Driver = "redis" // several processes change relations and write messages
	caches, closeCaches, err := cfg.OpenCaches(st, log)
	if err != nil {
		return nil, err
	}
	*closers = append(*closers, closeCaches)
	if d.bus, err = openBus(ctx, &cfg, log); err != nil {
		return nil, err
	}
	*closers = append(*closers, d.bus.Close)
	cfg.Logic.HeartbeatInterval = cfg.Comet.Heartbeat
	cfg.Logic.PersistOnBus = true // the jobs persist (logic/persist.go)
	if d.svc, err = logic.New(cfg.Logic, logic.Deps{Store: st, Issuer: issuer, Sessions: d.sessions, Bus: d.bus,
		Cache: caches.Relations, MessageCache: caches.MessageCache(), Unread: caches.UnreadCounter()}, log); err != nil {
		return nil, err
	}
	return d, nil
}

// NewLogic builds a logic node; it listens on nothing until Start.
func NewLogic(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Logic, err error) {
	quietKitex()
	if cfg.JWTSecret == "" {
		return nil, errors.New("goim logic needs jwt_secret (--jwt-secret or GOIM_JWT_SECRET): every logic process must verify the same tokens")
	}
	l := &Logic{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			l.closeBackends()
		}
	}()
	d, err := openDomain(ctx, cfg, []byte(cfg.JWTSecret), log, &l.closers)
	if err != nil {
		return nil, err
	}
	l.svc = d.svc
	if l.disco, err = openDiscovery(ctx, &cfg, ""); err != nil {
		return nil, err
	}
	l.closers = append(l.closers, l.disco.close)
	return l, nil
}

// randomSecret is the token secret of a process that verifies no token (a
// job): the logic service needs one.
func randomSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// Start serves the RPC and HTTP listeners and registers the node.
func (l *Logic) Start(ctx context.Context) error {
	var err error
	if l.rpc, err = rpc.NewLogicServer(l.cfg.RPCAddr, l.svc, rpc.ServerConfig{Logger: l.log}); err != nil {
		return err
	}
	if l.ops, err = startOps(l.cfg.HTTPAddr, l.svc.Handler(), l.log); err != nil {
		return err
	}
	addr := advertise(l.cfg.Cluster.AdvertiseRPC, l.rpc.Addr())
	name := l.cfg.Logic.Node
	if name == "" || name == logic.DefaultConfig().Node {
		name = "logic-" + addr
	}
	if l.dereg, err = l.disco.reg.Register(ctx, discovery.Instance{Service: ServiceLogic, Name: name, Addr: addr}); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	l.ops.ready.Store(true)
	l.log.Info("goim logic ready", "name", name, "rpc", addr, "http", l.ops.addr())
	return nil
}

// RPCAddr returns the bound RPC address (after Start).
func (l *Logic) RPCAddr() net.Addr { return l.rpc.Addr() }

// HTTPAddr returns the bound HTTP address (after Start).
func (l *Logic) HTTPAddr() net.Addr { return l.ops.ln.Addr() }

// Shutdown deregisters the node (comets stop choosing it), lets the RPC
// calls and HTTP requests in flight finish (their messages are on Kafka once
// answered), then closes the backends (the Kafka producer flushes).
func (l *Logic) Shutdown(ctx context.Context) error {
	l.shutdownOnce.Do(func() { l.shutdownErr = l.shutdown(ctx) })
	return l.shutdownErr
}

func (l *Logic) shutdown(ctx context.Context) error {
	var errs []error
	if l.dereg != nil {
		if err := l.dereg(ctx); err != nil {
			errs = append(errs, fmt.Errorf("deregister: %w", err))
		}
	}
	if l.ops != nil {
		l.ops.ready.Store(false)
	}
	if l.rpc != nil {
		if err := l.rpc.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("rpc: %w", err))
		}
	}
	if l.ops != nil {
		if err := l.ops.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	}
	if err := l.svc.Close(); err != nil {
		errs = append(errs, fmt.Errorf("logic: %w", err))
	}
	errs = append(errs, l.closeBackends())
	return errors.Join(errs...)
}

// closeBackends closes what New opened, last opened first.
func (l *Logic) closeBackends() error {
	return closeAll(&l.closers)
}

func closeAll(closers *[]func() error) error {
	var errs []error
	for i := len(*closers) - 1; i >= 0; i-- {
		errs = append(errs, (*closers)[i]())
	}
	*closers = nil
	return errors.Join(errs...)
}

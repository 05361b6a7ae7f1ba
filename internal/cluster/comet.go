package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/discovery"
	"github.com/goimdev/goim/internal/rpc"
)

// Comet is a running `goim comet`: it holds client connections, calls the
// logic instances over RPC and serves pushes to the jobs over RPC. It
// registers itself in discovery (with its client addresses) and follows the
// other comets, whose addresses it sends in Op 6 server_draining.
type Comet struct {
	cfg   config.Config
	log   *slog.Logger
	disco *disco
	logic *rpc.LogicClient
	srv   *comet.Server
	rpc   *rpc.CometServer
	ops   *opsServer

	dereg  func(context.Context) error
	cancel context.CancelFunc
	wg     sync.WaitGroup

	shutdownOnce sync.Once
	shutdownErr  error
}

// NewComet builds a comet node; it connects to discovery but listens on
// nothing until Start.
func NewComet(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Comet, err error) {
	quietKitex()
	c := &Comet{cfg: cfg, log: log}
	if c.disco, err = openDiscovery(ctx, &cfg, ServiceLogic); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.disco.close()
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c.logic, err = rpc.NewLogicClient(wctx, c.disco.watch, rpc.ClientConfig{Timeout: cfg.Comet.LogicTimeout, Logger: log}); err != nil {
		return nil, fmt.Errorf("logic client: %w", err)
	}
	if c.srv, err = comet.New(cfg.Comet, c.logic, log); err != nil {
		c.logic.Close()
		return nil, err
	}
	return c, nil
}

// Start opens the client listeners, the RPC server and the HTTP health and
// metrics server, and registers the node. It does not block.
func (c *Comet) Start(ctx context.Context) error {
	if err := c.srv.Start(); err != nil {
		return fmt.Errorf("comet: %w", err)
	}
	var err error
	if c.rpc, err = rpc.NewCometServer(c.cfg.RPCAddr, c.srv, rpc.ServerConfig{Logger: c.log}); err != nil {
		return err
	}
	if c.ops, err = startOps(c.cfg.HTTPAddr, nil, c.log); err != nil {
		return err
	}
	in := discovery.Instance{Service: ServiceComet, Name: c.srv.Node(), Addr: advertise(c.cfg.Cluster.AdvertiseRPC, c.rpc.Addr()),
		Meta: map[string]string{}}
	if a := c.srv.TCPAddr(); a != nil {
		in.Meta[MetaTCP] = advertise(c.cfg.Comet.AdvertiseTCP, a)
	}
	if a := c.srv.WSAddr(); a != nil {
		in.Meta[MetaWS] = advertise(c.cfg.Comet.AdvertiseWS, a)
	}
	if c.dereg, err = c.disco.reg.Register(ctx, in); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	peers, err := c.disco.watch.Watch(wctx, ServiceComet)
	if err != nil {
		return fmt.Errorf("watch comets: %w", err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for list := range peers {
			var tcp, ws []string
			for _, p := range list {
				if p.Name == c.srv.Node() {
					continue
				}
				if a := p.Meta[MetaTCP]; a != "" {
					tcp = append(tcp, a)
				}
				if a := p.Meta[MetaWS]; a != "" {
					ws = append(ws, a)
				}
			}
			slices.Sort(tcp)
			slices.Sort(ws)
			c.srv.SetDrainAddrs(tcp, ws)
		}
	}()
	c.ops.ready.Store(true)
	c.log.Info("goim comet ready", "node", c.srv.Node(), "rpc", in.Addr, "tcp", in.Meta[MetaTCP], "ws", in.Meta[MetaWS],
		"http", c.ops.addr())
	return nil
}

// Server returns the comet server (tests).
func (c *Comet) Server() *comet.Server { return c.srv }

// RPCAddr returns the bound RPC address (after Start).
func (c *Comet) RPCAddr() net.Addr { return c.rpc.Addr() }

// HTTPAddr returns the bound health/metrics address (after Start).
func (c *Comet) HTTPAddr() net.Addr { return c.ops.ln.Addr() }

// Shutdown deregisters the node (the jobs stop routing to it), drains the
// clients with Op 6 server_draining carrying the other comets' addresses,
// then stops the RPC server and closes the logic client.
func (c *Comet) Shutdown(ctx context.Context) error {
	c.shutdownOnce.Do(func() { c.shutdownErr = c.shutdown(ctx) })
	return c.shutdownErr
}

func (c *Comet) shutdown(ctx context.Context) error {
	var errs []error
	if c.ops != nil {
		c.ops.ready.Store(false)
	}
	if c.dereg != nil {
		if err := c.dereg(ctx); err != nil {
			errs = append(errs, fmt.Errorf("deregister: %w", err))
		}
	}
	if err := c.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("comet: %w", err))
	}
	if c.rpc != nil {
		if err := c.rpc.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("rpc: %w", err))
		}
	}
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	if c.ops != nil {
		errs = append(errs, c.ops.stop(ctx))
	}
	errs = append(errs, c.logic.Close(), c.disco.close())
	return errors.Join(errs...)
}

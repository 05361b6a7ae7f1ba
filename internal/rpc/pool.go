package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	kclient "github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/connpool"
	kdiscovery "github.com/cloudwego/kitex/pkg/discovery"
	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/rpcinfo/remoteinfo"
	"github.com/cloudwego/kitex/pkg/serviceinfo"

	"github.com/goimdev/goim/internal/discovery"
)

// ErrNoInstance is returned when no instance of the service is known.
var ErrNoInstance = errors.New("rpc: no live instance")

// ClientConfig configures the clients. The zero value is usable.
type ClientConfig struct {
	// Timeout bounds one call (one attempt), unless the context's deadline
	// is sooner. Default 3s.
	Timeout time.Duration
	// ConnectTimeout bounds dialing an instance. Default 2s.
	ConnectTimeout time.Duration
	// Retries is how many more attempts an idempotent call gets after a
	// failure, each on the next instance. Default 2; negative: none.
	Retries int
	// MaxIdleConns is the number of idle connections kept per instance.
	// Calls beyond it dial a connection of their own, so it should cover
	// the calls in flight at a peak (a comet's connect burst). Default 512.
	MaxIdleConns int
	// Logger receives instance changes. Default slog.Default().
	Logger *slog.Logger
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	if c.Retries == 0 {
		c.Retries = 2
	} else if c.Retries < 0 {
		c.Retries = 0
	}
	if c.MaxIdleConns <= 0 {
		c.MaxIdleConns = 512
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// newKitexClient returns a Kitex client of one service at one address, with
// long-lived pooled connections.
//
// The instance is set on every call before Kitex's service discovery step,
// which then steps aside: left to it, a connection failure would be retried
// up to six times on the same address (warning each time) before the pool
// could move on to another instance.
func newKitexClient(svc *serviceinfo.ServiceInfo, addr string, cfg ClientConfig) (kclient.Client, error) {
	ins := kdiscovery.NewInstance("tcp", addr, kdiscovery.DefaultWeight, nil)
	pin := func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req, resp any) error {
			if ri := rpcinfo.GetRPCInfo(ctx); ri != nil {
				if r := remoteinfo.AsRemoteInfo(ri.To()); r != nil {
					r.SetInstance(ins)
				}
			}
			return next(ctx, req, resp)
		}
	}
	kc, err := kclient.NewClient(svc,
		kclient.WithDestService("goim."+svc.ServiceName),
		kclient.WithHostPorts(addr),
		kclient.WithMiddleware(pin),
		kclient.WithRPCTimeout(cfg.Timeout),
		kclient.WithConnectTimeout(cfg.ConnectTimeout),
		kclient.WithLongConnection(connpool.IdleConfig{
			MaxIdlePerAddress: cfg.MaxIdleConns,
			MaxIdleGlobal:     cfg.MaxIdleConns * 16,
			MaxIdleTimeout:    time.Minute,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("rpc: client of %s at %s: %w", svc.ServiceName, addr, err)
	}
	return kc, nil
}

// ErrClosed is returned by a call on a closed client (for example the
// client of an instance that has left).
var ErrClosed = errors.New("rpc: client closed")

// kitexConn is a Kitex client that may be closed while calls are made on
// it: a call on a closed Kitex client panics, here it fails with ErrClosed.
// Close waits for the calls in flight.
type kitexConn struct {
	mu     sync.RWMutex
	closed bool
	kc     kclient.Client
}

func dialKitex(svc *serviceinfo.ServiceInfo, addr string, cfg ClientConfig) (*kitexConn, error) {
	kc, err := newKitexClient(svc, addr, cfg)
	if err != nil {
		return nil, err
	}
	return &kitexConn{kc: kc}, nil
}

func (k *kitexConn) call(ctx context.Context, method string, args, result any) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return ErrClosed
	}
	return k.kc.Call(ctx, method, args, result)
}

func (k *kitexConn) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	k.closed = true
	if c, ok := k.kc.(io.Closer); ok {
		_ = c.Close()
	}
}

// member is one instance of a service and its client.
type member[C any] struct {
	name, addr string
	client     C
}

// snapshot is an immutable view of a pool's members.
type snapshot[C any] struct {
	list   []*member[C] // in the watcher's order
	byName map[string]*member[C]
}

// pool keeps one client per live instance of a service, following a
// discovery.Watcher (or a fixed list), and picks them round-robin.
type pool[C any] struct {
	service string
	dial    func(addr string) (C, error)
	close   func(C)
	log     *slog.Logger

	mu     sync.Mutex // serialises update and close
	closed bool
	byName map[string]*member[C]
	snap   atomic.Pointer[snapshot[C]]
	next   atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
}

func newPool[C any](service string, dial func(string) (C, error), closeFn func(C), log *slog.Logger) *pool[C] {
	p := &pool[C]{service: service, dial: dial, close: closeFn, log: log, byName: make(map[string]*member[C])}
	p.snap.Store(&snapshot[C]{})
	return p
}

// follow applies the first list of w at once (waiting for it within ctx)
// and the later ones in the background until close.
func (p *pool[C]) follow(ctx context.Context, w discovery.Watcher) error {
	wctx, cancel := context.WithCancel(context.Background())
	ch, err := w.Watch(wctx, p.service)
	if err != nil {
		cancel()
		return fmt.Errorf("rpc: watch %s: %w", p.service, err)
	}
	select {
	case list, ok := <-ch:
		if !ok {
			cancel()
			return fmt.Errorf("rpc: watch %s: closed before the first list", p.service)
		}
		p.update(list)
	case <-ctx.Done():
		cancel()
		return fmt.Errorf("rpc: watch %s: %w", p.service, ctx.Err())
	}
	p.cancel = cancel
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		for list := range ch {
			p.update(list)
		}
	}()
	return nil
}

// update makes the pool hold exactly the instances in list: a client is
// kept while its instance keeps its name and address, dialled for a new
// one and closed for one that left.
func (p *pool[C]) update(list []discovery.Instance) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	old := p.byName
	next := make(map[string]*member[C], len(list))
	var drop []C
	for _, in := range list {
		name := in.Name
		if name == "" {
			name = in.Addr
		}
		if _, dup := next[name]; dup || in.Addr == "" {
			continue
		}
		if m, ok := old[name]; ok && m.addr == in.Addr {
			next[name] = m
			continue
		}
		c, err := p.dial(in.Addr)
		if err != nil {
			p.log.Error("rpc: instance left out", "component", "rpc", "service", p.service, "name", name, "addr", in.Addr, "err", err)
			continue
		}
		next[name] = &member[C]{name: name, addr: in.Addr, client: c}
		p.log.Info("rpc: instance up", "component", "rpc", "service", p.service, "name", name, "addr", in.Addr)
	}
	for name, m := range old {
		if n, ok := next[name]; !ok || n != m {
			drop = append(drop, m.client)
			p.log.Info("rpc: instance gone", "component", "rpc", "service", p.service, "name", name, "addr", m.addr)
		}
	}
	p.byName = next
	snap := make([]*member[C], 0, len(next))
	seen := make(map[*member[C]]bool, len(next))
	for _, in := range list { // keep the watcher's order
		name := in.Name
		if name == "" {
			name = in.Addr
		}
		if m, ok := next[name]; ok && !seen[m] {
			seen[m] = true
			snap = append(snap, m)
		}
	}
	p.snap.Store(&snapshot[C]{list: snap, byName: next})
	p.mu.Unlock()
	// Closing waits for the calls in flight on the clients that leave.
	for _, c := range drop {
		p.close(c)
	}
}

// members returns the current snapshot (do not modify).
func (p *pool[C]) members() []*member[C] { return p.snap.Load().list }

// get returns the client of the instance named name.
func (p *pool[C]) get(name string) (C, bool) {
	if m, ok := p.snap.Load().byName[name]; ok {
		return m.client, true
	}
	var zero C
	return zero, false
}

// call runs fn on the next instance round-robin and, while it fails with
// an error retry accepts, on the following ones: at most 1+retries
// attempts. It stops early when ctx ends.
func (p *pool[C]) call(ctx context.Context, retries int, retry func(error) bool, fn func(C) error) error {
	ms := p.members()
	if len(ms) == 0 {
		return ErrNoInstance
	}
	start := p.next.Add(1)
	var err error
	for i := range 1 + retries {
		m := ms[(start+uint64(i))%uint64(len(ms))]
		if err = fn(m.client); err == nil || ctx.Err() != nil || !retry(err) {
			return err
		}
	}
	return err
}

// notSent reports whether err says that the request never left: no
// connection could be had, or the client was closed (its instance left).
// Such a call can be tried on another instance even when it is not
// idempotent.
func notSent(err error) bool {
	return errors.Is(err, kerrors.ErrGetConnection) || errors.Is(err, ErrClosed)
}

func anyError(error) bool { return true }

// closeAll stops following the watcher and closes every client.
func (p *pool[C]) closeAll() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	all := p.byName
	p.byName = nil
	p.snap.Store(&snapshot[C]{})
	p.mu.Unlock()
	for _, m := range all {
		p.close(m.client)
	}
}

package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EtcdConfig configures the etcd registry. Zero values take the default
// documented on each field.
type EtcdConfig struct {
	// Endpoints are the etcd client URLs. Required.
	Endpoints []string `yaml:"endpoints"`
	// Prefix starts every key: an instance is at
	// Prefix + service + "/" + name, its value the JSON of Instance.
	// Default "/goim/discovery/".
	Prefix string `yaml:"prefix"`
	// TTL is the lease of a registration: a process that dies without
	// deregistering disappears after it. Rounded up to whole seconds; etcd
	// raises it to its own minimum (1.5 election timeouts, 1.5 s by
	// default). The lease is kept alive at a third of it. Default 10s.
	TTL time.Duration `yaml:"ttl"`
	// DialTimeout bounds connecting to etcd, and NewEtcd's first request.
	// Default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// RetryInterval is the wait between attempts to re-register after a
	// lost lease or to re-read a service after a broken watch. Default 1s.
	RetryInterval time.Duration `yaml:"retry_interval"`
	// Logger reports lost leases and broken watches. Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// DefaultEtcdConfig returns the default configuration (without endpoints).
func DefaultEtcdConfig() EtcdConfig {
	return EtcdConfig{
		Prefix:        "/goim/discovery/",
		TTL:           10 * time.Second,
		DialTimeout:   5 * time.Second,
		RetryInterval: time.Second,
		Logger:        slog.Default(),
	}
}

// Etcd registers and watches instances in etcd.
type Etcd struct {
	c      *clientv3.Client
	cfg    EtcdConfig
	ttl    int64 // seconds
	log    *slog.Logger
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

var (
	_ Registrar = (*Etcd)(nil)
	_ Watcher   = (*Etcd)(nil)
)

// NewEtcd connects to etcd and checks that it answers within DialTimeout.
func NewEtcd(ctx context.Context, cfg EtcdConfig) (*Etcd, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("discovery: etcd without endpoints")
	}
	d := DefaultEtcdConfig()
	if cfg.Prefix == "" {
		cfg.Prefix = d.Prefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = d.TTL
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = d.DialTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = d.RetryInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = d.Logger
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: etcd client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := c.Get(pctx, cfg.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		c.Close()
		return nil, fmt.Errorf("discovery: etcd %v: %w", cfg.Endpoints, err)
	}
	e := &Etcd{c: c, cfg: cfg, ttl: int64((cfg.TTL + time.Second - 1) / time.Second), log: cfg.Logger.With("component", "discovery")}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Close stops the registrations' keepalives and the watches (their
// channels close) and closes the client. It does not deregister: an
// instance still registered disappears when its lease expires (TTL), as if
// the process had died. Call deregister first for a clean exit.
// Later calls return the first call's result.
func (e *Etcd) Close() error {
	e.closeOnce.Do(func() {
		e.cancel()
		e.wg.Wait()
		e.closeErr = e.c.Close()
	})
	return e.closeErr
}

func (e *Etcd) key(service, name string) string { return e.cfg.Prefix + service + "/" + name }

// Register puts in under a lease of TTL kept alive until deregister or
// Close; a lost lease (expired while etcd was unreachable, revoked) is
// replaced by a new one with the same key. The first registration is made
// before Register returns.
func (e *Etcd) Register(ctx context.Context, in Instance) (func(context.Context) error, error) {
	if in.Service == "" || in.Name == "" || strings.Contains(in.Service, "/") {
		return nil, errors.New("discovery: an instance needs a service (without '/') and a name")
	}
	val, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("discovery: encode instance: %w", err)
	}
	r := &registration{e: e, key: e.key(in.Service, in.Name), val: string(val), done: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(e.ctx)
	ka, err := r.grant(ctx)
	if err != nil {
		r.cancel()
		return nil, err
	}
	e.wg.Add(1)
	go r.keep(ka)
	return r.deregister, nil
}

type registration struct {
	e        *Etcd
	key, val string
	ctx      context.Context // ends with deregister or Close
	cancel   context.CancelFunc
	done     chan struct{} // keep returned

	mu    sync.Mutex
	lease clientv3.LeaseID
	once  sync.Once
	err   error
}

// grant makes a lease, puts the key under it and starts its keepalive.
func (r *registration) grant(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	lease, err := r.e.c.Grant(ctx, r.e.ttl)
	if err != nil {
		return nil, fmt.Errorf("discovery: grant lease for %s: %w", r.key, err)
	}
	if _, err := r.e.c.Put(ctx, r.key, r.val, clientv3.WithLease(lease.ID)); err != nil {
		r.revoke(lease.ID)
		return nil, fmt.Errorf("discovery: register %s: %w", r.key, err)
	}
	ka, err := r.e.c.KeepAlive(r.ctx, lease.ID)
	if err != nil {
		r.revoke(lease.ID)
		return nil, fmt.Errorf("discovery: keep lease of %s alive: %w", r.key, err)
	}
	r.mu.Lock()
	r.lease = lease.ID
	r.mu.Unlock()
	return ka, nil
}

// revoke drops a lease that could not be used (best effort: it expires
// anyway).
func (r *registration) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), r.e.cfg.DialTimeout)
	defer cancel()
	_, _ = r.e.c.Revoke(ctx, id)
}

// keep consumes the keepalive responses and registers again when the
// lease is lost, until r.ctx ends.
func (r *registration) keep(ka <-chan *clientv3.LeaseKeepAliveResponse) {
	defer r.e.wg.Done()
	defer close(r.done)
	for {
		for range ka {
		}
		if r.ctx.Err() != nil {
			return
		}
		r.e.log.Warn("registration lease lost, registering again", "key", r.key)
		for {
			var err error
			ka, err = r.grant(r.ctx)
			if err == nil {
				break
			}
			if r.ctx.Err() != nil {
				return
			}
			r.e.log.Warn("registering again failed", "key", r.key, "err", err)
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(r.e.cfg.RetryInterval):
			}
		}
	}
}

// deregister stops the keepalive and revokes the lease, which deletes the
// key. Later calls return the first call's result.
func (r *registration) deregister(ctx context.Context) error {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		r.mu.Lock()
		id := r.lease
		r.mu.Unlock()
		if _, err := r.e.c.Revoke(ctx, id); err != nil && status.Code(err) != codes.NotFound && !isLeaseNotFound(err) {
			r.err = fmt.Errorf("discovery: deregister %s: %w", r.key, err)
		}
	})
	return r.err
}

func isLeaseNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), "requested lease not found")
}

// Watch follows the instances of service (see Watcher). After a broken
// watch (etcd unreachable, history compacted) it reads the service again
// and carries on.
func (e *Etcd) Watch(ctx context.Context, service string) (<-chan []Instance, error) {
	prefix := e.cfg.Prefix + service + "/"
	resp, err := e.c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("discovery: read %s: %w", prefix, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.ctx, cancel)
	w := &watch{e: e, prefix: prefix, state: make(map[string]Instance)}
	w.load(resp)
	out := make(chan []Instance, 1)
	offer(out, w.list())
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(out)
		defer stop()
		defer cancel()
		w.run(wctx, resp.Header.Revision, out)
	}()
	return out, nil
}

type watch struct {
	e      *Etcd
	prefix string
	state  map[string]Instance // by key
}

func (w *watch) load(resp *clientv3.GetResponse) {
	clear(w.state)
	for _, kv := range resp.Kvs {
		w.put(string(kv.Key), kv.Value)
	}
}

func (w *watch) put(key string, val []byte) {
	var in Instance
	if err := json.Unmarshal(val, &in); err != nil {
		w.e.log.Warn("undecodable instance ignored", "key", key, "err", err)
		delete(w.state, key)
		return
	}
	if in.Name == "" {
		in.Name = strings.TrimPrefix(key, w.prefix)
	}
	w.state[key] = in
}

func (w *watch) list() []Instance {
	list := make([]Instance, 0, len(w.state))
	for _, in := range w.state {
		list = append(list, in.clone())
	}
	sortInstances(list)
	return list
}

func (w *watch) run(ctx context.Context, rev int64, out chan []Instance) {
	last := w.list()
	send := func() {
		if l := w.list(); !reflect.DeepEqual(l, last) {
			last = l
			offer(out, l)
		}
	}
	for {
		rev = w.follow(ctx, rev, send)
		// The watch ended: ctx ended, or it broke and must be resumed from
		// a fresh read.
		for {
			if ctx.Err() != nil {
				return
			}
			resp, err := w.e.c.Get(ctx, w.prefix, clientv3.WithPrefix())
			if err == nil {
				w.e.log.Debug("watch reread", "prefix", w.prefix, "n", len(resp.Kvs), "rev", resp.Header.Revision)
				w.load(resp)
				send()
				rev = resp.Header.Revision
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(w.e.cfg.RetryInterval):
			}
		}
	}
}

// follow applies the changes after rev until the watch ends, calling send
// after each batch, and returns the last revision seen.
func (w *watch) follow(ctx context.Context, rev int64, send func()) int64 {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := w.e.c.Watch(clientv3.WithRequireLeader(ctx), w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			w.e.log.Warn("watch broken, reading again", "prefix", w.prefix, "err", err)
			return rev
		}
		for _, ev := range wr.Events {
			switch ev.Type {
			case clientv3.EventTypePut:
				w.put(string(ev.Kv.Key), ev.Kv.Value)
			case clientv3.EventTypeDelete:
				delete(w.state, string(ev.Kv.Key))
			}
		}
		if len(wr.Events) > 0 {
			w.e.log.Debug("watch events", "prefix", w.prefix, "n", len(wr.Events), "rev", wr.Header.Revision)
			send()
		}
		rev = wr.Header.Revision
	}
	return rev
}

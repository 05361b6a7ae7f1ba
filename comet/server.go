package comet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/goimdev/goim/protocol"
)

// Server is a comet node. Create it with New, then Start; stop it with
// Shutdown. It satisfies job.Comet (PushKeys, PushRoom, Broadcast).
type Server struct {
	cfg   Config
	logic Logic
	log   *slog.Logger

	buckets []*bucket
	wheel   *wheel
	clock   atomic.Int64 // coarse unix ns, advanced by the wheel's ticker

	ctx    context.Context // base of Logic calls; cancelled when Shutdown ends
	cancel context.CancelFunc
	done   chan struct{} // closed by Shutdown to stop the background loops
	wg     sync.WaitGroup

	mu       sync.Mutex
	started  bool
	stopping bool
	stopped  bool // no more background goroutines may start
	loops    []netpoll.EventLoop
	served   []chan struct{} // served[i] is closed when loops[i].Serve returned
	tcpAddr  net.Addr
	wsAddr   net.Addr

	draining atomic.Bool
	live     atomic.Int32 // open connections
	authed   atomic.Int32 // authenticated connections
	tcpLive  atomic.Int32
	wsLive   atomic.Int32
	nrooms   atomic.Int32
	dropped  atomic.Uint64

	ipMu sync.Mutex
	ips  map[netip.Addr]int32

	online atomic.Pointer[map[string]int32] // all-comet room counts from the last RenewOnline

	hb *hbBatch // heartbeats collected for a HeartbeatBatcher logic (nil: called inline)

	drainAddrs atomic.Pointer[[2][]string] // SetDrainAddrs (TCP, WebSocket); nil: cfg.DrainAddrs

	connPrefix string        // node + "-" + boot id + "-": the ConnID of a conn is this and its id
	connSeq    atomic.Uint64 // last conn id
	wallNow    func() int64  // unix ns for Logic.Heartbeat pacing (tests replace it)
	// hookRegister, when set (tests), runs in auth just before the
	// connection becomes authenticated and takes its key.
	hookRegister func(*conn)
}

// Stats is a snapshot of a server's load.
type Stats struct {
	Conns    int    // authenticated connections
	Pending  int    // accepted connections not authenticated yet
	TCP      int    // open TCP connections (authenticated or not)
	WS       int    // open WebSocket connections (authenticated or not)
	Rooms    int    // rooms with a local member
	IPs      int    // distinct client addresses
	Dropped  uint64 // connections cut as slow consumers since New
	Draining bool   // Shutdown has begun
}

// New validates cfg (zero fields take their defaults, see Config) and
// returns a server that has bound nothing yet. log may be nil
// (slog.Default()).
func New(cfg Config, logic Logic, log *slog.Logger) (*Server, error) {
	if logic == nil {
		return nil, errors.New("comet: nil Logic")
	}
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "comet", "node", cfg.Node)
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Now().UnixNano()
	s := &Server{
		cfg:     cfg,
		logic:   logic,
		log:     log,
		buckets: make([]*bucket, cfg.Buckets),
		wheel:   newWheel(wheelTick(cfg.HandshakeTimeout, 3*cfg.Heartbeat, cfg.WriteTimeout), now),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		ips:     make(map[netip.Addr]int32),
		// The boot id keeps ConnIDs unique across restarts of a node.
		connPrefix: cfg.Node + "-" + strconv.FormatUint(rand.Uint64()>>16, 36) + "-",
		wallNow:    func() int64 { return time.Now().UnixNano() },
	}
	if b, ok := logic.(HeartbeatBatcher); ok {
		s.hb = &hbBatch{b: b}
	}
	for i := range s.buckets {
		s.buckets[i] = newBucket()
	}
	s.clock.Store(now)
	return s, nil
}

// Node returns the node name.
func (s *Server) Node() string { return s.cfg.Node }

// Config returns the effective configuration (defaults filled in).
func (s *Server) Config() Config { return s.cfg }

// TCPAddr returns the bound TCP address, nil if TCP is disabled or the
// server is not started.
func (s *Server) TCPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpAddr
}

// WSAddr returns the bound WebSocket address, nil if WebSocket is disabled
// or the server is not started.
func (s *Server) WSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wsAddr
}

func (s *Server) now() int64 { return s.clock.Load() }

// Start binds the listeners and serves in the background; it does not
// block. It fails if a listener cannot be bound (none is left bound).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopping {
		return errors.New("comet: already started or shut down")
	}
	type bound struct {
		ln netpoll.Listener
		tr uint8
	}
	var lns []bound
	closeAll := func() {
		for _, b := range lns {
			_ = b.ln.Close()
		}
	}
	for _, l := range []struct {
		addr string
		tr   uint8
	}{{s.cfg.TCPAddr, trTCP}, {s.cfg.WSAddr, trWS}} {
		if l.addr == "" {
			continue
		}
		ln, err := netpoll.CreateListener("tcp", l.addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("comet: listen %s %s: %w", transportName(l.tr), l.addr, err)
		}
		lns = append(lns, bound{ln, l.tr})
	}
	for _, b := range lns {
		tr := b.tr
		evl, err := netpoll.NewEventLoop(s.onRequest,
			netpoll.WithOnPrepare(func(nc netpoll.Connection) context.Context { return s.prepare(nc, tr) }),
			netpoll.WithOnConnect(s.onConnect))
		if err != nil {
			closeAll()
			return fmt.Errorf("comet: event loop: %w", err)
		}
		s.loops = append(s.loops, evl)
		if tr == trTCP {
			s.tcpAddr = b.ln.Addr()
		} else {
			s.wsAddr = b.ln.Addr()
		}
		ln := b.ln
		served := make(chan struct{})
		s.served = append(s.served, served)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(served)
			if err := evl.Serve(ln); err != nil {
				s.log.Error("comet: serve ended", "transport", transportName(tr), "err", err)
			}
		}()
	}
	s.started = true
	s.wg.Add(2)
	go s.wheelLoop()
	go s.renewLoop()
	if s.hb != nil {
		s.wg.Add(1)
		go s.heartbeatLoop()
	}
	s.log.Info("comet: serving", "tcp", addrString(s.tcpAddr), "ws", addrString(s.wsAddr))
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// prepare is netpoll's OnPrepare: it sets a new connection up. The
// returned context is the *conn (see conn.Context). A connection to refuse
// (draining, too many from its address) is refused once netpoll has
// registered it (onConnect for TCP, after the upgrade for WebSocket):
// closing it here, before registration, makes netpoll log an error.
func (s *Server) prepare(nc netpoll.Connection, tr uint8) context.Context {
	ip := remoteIP(nc)
	c := &conn{Context: context.Background(), s: s, nc: nc, tr: tr, wslot: -1, id: s.connSeq.Add(1)}
	c.wfn = c.writeLoop
	n := s.addIP(ip)
	switch {
	case s.draining.Load():
		c.refuse = refuseDraining
	case s.cfg.MaxConnsPerIP > 0 && int(n) > s.cfg.MaxConnsPerIP:
		c.refuse = refuseTooMany
	}
	_ = nc.SetWriteTimeout(s.cfg.WriteTimeout)
	now := s.now()
	c.since.Store(now)
	c.lastRead.Store(now)
	s.live.Add(1)
	if tr == trWS {
		s.wsLive.Add(1)
		metricConnsWS.Inc()
	} else {
		s.tcpLive.Add(1)
		metricConnsTCP.Inc()
	}
	_ = nc.AddCloseCallback(c.onClosed)
	s.wheel.add(c, now+int64(s.cfg.HandshakeTimeout))
	return c
}

// onConnect is netpoll's OnConnect, run once the connection is registered.
func (s *Server) onConnect(ctx context.Context, nc netpoll.Connection) context.Context {
	if c, ok := ctx.(*conn); ok && c.tr == trTCP && c.refuse != refuseNone {
		c.refuseNow()
	}
	return ctx
}

func remoteIP(nc netpoll.Connection) netip.Addr {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) addIP(ip netip.Addr) int32 {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	n := s.ips[ip] + 1
	s.ips[ip] = n
	return n
}

func (s *Server) releaseIP(ip netip.Addr) {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if n := s.ips[ip] - 1; n > 0 {
		s.ips[ip] = n
	} else {
		delete(s.ips, ip)
	}
}

// onRequest is netpoll's OnRequest: the connection has input.
func (s *Server) onRequest(ctx context.Context, nc netpoll.Connection) error {
	c, ok := ctx.(*conn)
	if !ok {
		return nc.Close()
	}
	c.serve()
	return nil
}

// wheelLoop advances the clock and the timer wheel.
func (s *Server) wheelLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Duration(s.wheel.tick))
	defer t.Stop()
	var due []*conn
	for {
		select {
		case <-s.done:
			return
		case tm := <-t.C:
			now := tm.UnixNano()
			s.clock.Store(now)
			due = s.wheel.advance(now, due[:0])
			for _, c := range due {
				s.expire(c, now)
			}
			clear(due)
		}
	}
}

// expire handles a connection whose wheel slot came due: it closes it if
// its real deadline has passed, or files it again.
func (s *Server) expire(c *conn, now int64) {
	var deadline int64
	switch c.state.Load() {
	case stHandshake:
		if deadline = c.since.Load() + int64(s.cfg.HandshakeTimeout); now >= deadline {
			c.closeWith(protocol.CodeHandshakeTimeout, "not authenticated in time", nil)
			return
		}
	case stAuthed:
		if deadline = c.lastRead.Load() + c.idle; now >= deadline {
			c.closeWith(protocol.CodeIdleTimeout, "nothing received for 3 heartbeat intervals", nil)
			return
		}
	case stClosing:
		if deadline = c.since.Load() + int64(s.cfg.WriteTimeout) + int64(time.Second); now >= deadline {
			_ = c.nc.Close() // the close is stuck: force it
			return
		}
	default: // closed
		return
	}
	s.wheel.add(c, deadline)
}

// roomOnline is the online count of room r over all comets, as of the last
// RenewOnline, and at least its local count.
func (s *Server) roomOnline(r *room) int32 {
	n := r.online.Load()
	if m := s.online.Load(); m != nil {
		if all := (*m)[r.id]; all > n {
			n = all
		}
	}
	return n
}

// renewLoop reports to logic every RenewInterval (and at once).
func (s *Server) renewLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.RenewInterval)
	defer t.Stop()
	for {
		s.renew()
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

func (s *Server) renew() {
	s.ipMu.Lock()
	ips := int32(len(s.ips))
	s.ipMu.Unlock()
	rep := &OnlineReport{
		Server:  s.cfg.Node,
		TakenAt: time.Now(), // before the snapshot: see OnlineReport.TakenAt
		TCPAddr: s.advertise(s.cfg.AdvertiseTCP, s.TCPAddr()),
		WSAddr:  s.advertise(s.cfg.AdvertiseWS, s.WSAddr()),
		Conns:   s.authed.Load(),
		IPs:     ips,
		Rooms:   s.RoomCounts(),
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.LogicTimeout)
	defer cancel()
	all, err := s.logic.RenewOnline(ctx, rep)
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("comet: RenewOnline failed", "err", err)
		}
		return
	}
	if all == nil {
		all = map[string]int32{}
	}
	s.online.Store(&all)
}

func (s *Server) advertise(cfg string, bound net.Addr) string {
	if cfg != "" {
		return cfg
	}
	return addrString(bound)
}

// disconnect tells logic, in the background, that an authenticated
// connection is gone.
func (s *Server) disconnect(userID int64, key, connID string) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.log.Warn("comet: connection closed after shutdown; Logic.Disconnect skipped", "user", userID, "key", key)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LogicTimeout)
		defer cancel()
		if err := s.logic.Disconnect(ctx, s.cfg.Node, userID, key, connID); err != nil {
			s.log.Warn("comet: Logic.Disconnect failed", "user", userID, "key", key, "err", err)
		}
	}()
}

// Stats returns a snapshot of the server's load.
func (s *Server) Stats() Stats {
	s.ipMu.Lock()
	ips := len(s.ips)
	s.ipMu.Unlock()
	authed := int(s.authed.Load())
	return Stats{
		Conns:    authed,
		Pending:  max(int(s.live.Load())-authed, 0),
		TCP:      int(s.tcpLive.Load()),
		WS:       int(s.wsLive.Load()),
		Rooms:    int(s.nrooms.Load()),
		IPs:      ips,
		Dropped:  s.dropped.Load(),
		Draining: s.draining.Load(),
	}
}

// RoomCounts returns the local online count of every room with a member.
func (s *Server) RoomCounts() map[string]int32 {
	m := make(map[string]int32)
	for _, b := range s.buckets {
		b.mu.RLock()
		for id, r := range b.rooms {
			if n := r.online.Load(); n > 0 {
				m[id] = n
			}
		}
		b.mu.RUnlock()
	}
	return m
}

// SetDrainAddrs replaces Config.DrainAddrs, the other nodes' client
// addresses sent in Op 6 server_draining: tcp to TCP clients, ws
// ("host:port" of the WebSocket listeners) to WebSocket clients. A cluster
// node follows the live comets with it. Safe to call at any time.
func (s *Server) SetDrainAddrs(tcp, ws []string) {
	s.drainAddrs.Store(&[2][]string{slices.Clone(tcp), slices.Clone(ws)})
}

// drainInfo returns the Op 6 server_draining fields for one connection:
// reconnect_after_ms drawn from [0, DrainWindow), so that clients do not
// all come back at once.
// stopLoop releases the listener of evl and waits until its Serve returned.
// netpoll's Shutdown does nothing when Serve has not set its server up yet
// (a Shutdown right after Start), and Serve would then wait forever: so it
// is repeated until Serve returned or ctx ends.
func stopLoop(ctx context.Context, evl netpoll.EventLoop, served <-chan struct{}) error {
	for {
		// No connection is left, so this only releases the listener.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		e := evl.Shutdown(sctx)
		cancel()
		if e != nil && !errors.Is(e, context.DeadlineExceeded) {
			return fmt.Errorf("comet: stop listener: %w", e)
		}
		select {
		case <-served:
			return nil
		case <-ctx.Done():
			return nil // Shutdown reports ctx's error when it waits for its goroutines
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *Server) drainInfo() *drainInfo {
	d := &drainInfo{addrs: s.cfg.DrainAddrs}
	if p := s.drainAddrs.Load(); p != nil {
		d.addrs, d.wsAddrs = p[0], p[1]
		if d.wsAddrs == nil {
			d.wsAddrs = []string{}
		}
	}
	if s.cfg.DrainWindow > 0 {
		d.reconnectAfter = rand.N(s.cfg.DrainWindow)
	}
	return d
}

// Shutdown drains the server: it stops admitting connections (new ones get
// Op 6 server_draining at once, after the upgrade on WebSocket), sends
// every connection Op 6 server_draining (reconnect_after_ms drawn from
// [0, DrainWindow), addrs = DrainAddrs) spread over DrainWindow (or half the
// time left before ctx's deadline, if shorter), waits until every
// connection is gone, then releases the listeners and stops the background
// loops. When ctx ends first, every connection not told yet gets its Op 6
// server_draining at once, the connections left are closed after a short
// grace (drainGrace) for those writes, and ctx's error is returned. Calling
// it again returns at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	started := s.started
	s.mu.Unlock()
	if !started {
		s.cancel()
		return nil
	}
	s.draining.Store(true)
	err := s.drain(ctx)

	close(s.done)
	for i, evl := range s.loops {
		if e := stopLoop(ctx, evl, s.served[i]); e != nil && err == nil {
			err = e
		}
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	waited := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("comet: shutdown: %w", ctx.Err())
		}
	}
	s.cancel()
	s.log.Info("comet: stopped")
	return err
}

func (s *Server) drain(ctx context.Context) error {
	window := s.cfg.DrainWindow
	if dl, ok := ctx.Deadline(); ok {
		if half := time.Until(dl) / 2; half < window {
			window = max(half, 0)
		}
	}
	// Connections already closing get no Op 6 and take no share of the
	// window (a drain right after clients left must not wait it out).
	conns := slices.DeleteFunc(s.wheel.each(nil), func(c *conn) bool { return c.state.Load() >= stClosing })
	s.log.Info("comet: draining", "conns", len(conns), "window", window)
	start := time.Now()
	for i, c := range conns {
		if window > 0 {
			at := start.Add(window * time.Duration(i) / time.Duration(len(conns)))
			if d := time.Until(at); d > 5*time.Millisecond {
				if !sleepCtx(ctx, d) {
					return s.drainNow(ctx.Err())
				}
			}
		}
		c.closeWith(protocol.CodeServerDraining, "server shutting down", s.drainInfo())
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.live.Load() > 0 {
		select {
		case <-ctx.Done():
			return s.drainNow(ctx.Err())
		case <-t.C:
			// Connections admitted while the drain began, and closes that
			// are stuck, are dealt with here (closeWith ignores closing ones).
			for _, c := range s.wheel.each(nil) {
				c.closeWith(protocol.CodeServerDraining, "server shutting down", s.drainInfo())
			}
		}
	}
	return nil
}

// drainGrace is how long a drain cut short by its context waits for the
// Op 6 server_draining it queued at once to be written before it closes the
// connections left. A write that blocks (a client that does not read) ends
// with the close: that client gets no Op 6.
const drainGrace = 250 * time.Millisecond

// drainNow ends a drain whose context ended (cause): every connection not
// told yet gets Op 6 server_draining now, and what is still open after
// drainGrace is closed.
func (s *Server) drainNow(cause error) error {
	for _, c := range s.wheel.each(nil) {
		c.closeWith(protocol.CodeServerDraining, "server shutting down", s.drainInfo())
	}
	grace := time.NewTimer(drainGrace)
	defer grace.Stop()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
wait:
	for s.live.Load() > 0 {
		select {
		case <-grace.C:
			break wait
		case <-t.C:
		}
	}
	left := s.live.Load()
	for _, c := range s.wheel.each(nil) {
		_ = c.nc.Close()
	}
	if left == 0 {
		// Everyone was told and is gone, but the drain did not finish in time.
		return fmt.Errorf("comet: drain: %w", cause)
	}
	return fmt.Errorf("comet: drain: %d connections left: %w", left, cause)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

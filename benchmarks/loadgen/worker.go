package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bytedance/sonic"
	"github.com/gobwas/ws"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/protocol"
)

// maxErrorKinds bounds the distinct failure reasons a worker keeps.
const maxErrorKinds = 32

// progressEvery is how often a connecting worker reports progress.
const progressEvery = 250 * time.Millisecond

// Worker holds benchmark connections in one process. Its methods are
// called by one goroutine (Serve's loop, or a test); the connections' reader
// goroutines and the heartbeat loop run on their own.
type Worker struct {
	id  int
	log *slog.Logger

	mu     sync.Mutex
	conns  []*client
	errs   map[string]int64
	discs  map[string]int64
	hbStop chan struct{} // nil when the heartbeat loop is not running
	hbDone chan struct{}

	attempted, authed, failed, open, closed atomic.Int64
	hbSent, hbReplies, hbErrors, other      atomic.Int64
	heartbeat                               atomic.Int64 // interval in ns, 0 until known
	hbLag                                   atomic.Int64 // latest heartbeat's lateness in ns since reset

	// latency is sharded by connection so that readers on different cores
	// rarely write the same cache lines.
	latency   [latencyShards]*Hist
	handshake *Hist

	readers sync.WaitGroup
}

// NewWorker returns an empty worker; id names it in progress reports.
func NewWorker(id int, log *slog.Logger) *Worker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{id: id, log: log, errs: map[string]int64{}, discs: map[string]int64{}, handshake: NewHist()}
	for i := range w.latency {
		w.latency[i] = NewHist()
	}
	return w
}

// latencyShards is the number of latency histograms per worker.
const latencyShards = 8

// Connect opens one authenticated connection per user id of spec at the
// spec's rate and returns when every handshake has ended (success or
// failure) or ctx is done. progress, if not nil, is called periodically and
// once at the end. The connections stay open, read by their own goroutines,
// until CloseConns.
func (w *Worker) Connect(ctx context.Context, spec ConnectSpec, progress func(Progress)) error {
	spec.setDefaults()
	if spec.Transport != TransportTCP && spec.Transport != TransportWS {
		return fmt.Errorf("unknown transport %q", spec.Transport)
	}
	iss, err := auth.NewIssuer([]byte(spec.Secret), spec.Issuer)
	if err != nil {
		return fmt.Errorf("token issuer: %w", err)
	}
	target := int64(len(spec.UserIDs))
	report := func() {
		if progress != nil {
			progress(Progress{Worker: w.id, Attempted: w.attempted.Load(), Authed: w.authed.Load(), Failed: w.failed.Load(), Target: target})
		}
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				report()
			}
		}
	}()
	defer func() {
		close(stopProgress)
		<-progressDone
		report()
	}()

	addrs := SplitAddrs(spec.Addr)
	if len(addrs) == 0 {
		return errors.New("no comet address")
	}
	sem := make(chan struct{}, spec.MaxInFlight)
	var handshakes sync.WaitGroup
	start := time.Now()
	for i, uid := range spec.UserIDs {
		if spec.Rate > 0 {
			due := start.Add(RampOffset(i, spec.Rate))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
		}
		if ctx.Err() != nil {
			break
		}
		w.attempted.Add(1)
		handshakes.Add(1)
		w.readers.Add(1)
		go w.run(ctx, &spec, addrs[i%len(addrs)], iss, uid, sem, &handshakes)
	}
	handshakes.Wait()
	w.startHeartbeats(&spec)
	return ctx.Err()
}

// RampOffset is when, after the start of a ramp at rate connections per
// second, connection number i is due: i/rate seconds (0 for rate <= 0).
func RampOffset(i int, rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(i) / rate * float64(time.Second))
}

// run handshakes one connection and then becomes its reader.
func (w *Worker) run(ctx context.Context, spec *ConnectSpec, addr string, iss *auth.Issuer, uid int64, sem chan struct{}, handshakes *sync.WaitGroup) {
	defer w.readers.Done()
	released := false
	release := func() {
		if !released {
			released = true
			<-sem
			handshakes.Done()
		}
	}
	defer release()
	key := "bench-" + strconv.FormatInt(uid, 10)
	tok, _, err := iss.Issue(uid, key, spec.TokenTTL)
	if err != nil {
		w.fail(fmt.Errorf("token: %w", err))
		return
	}
	t0 := time.Now()
	c, hb, err := dialClientAddr(ctx, spec, addr, tok, key)
	if err != nil {
		w.fail(err)
		return
	}
	w.handshake.Record(int64(time.Since(t0)))
	if spec.Heartbeat > 0 {
		hb = spec.Heartbeat
	}
	if hb > 0 && w.heartbeat.CompareAndSwap(0, int64(hb)) {
		w.startHeartbeats(spec)
	}
	c.lastHB.Store(time.Now().UnixNano()) // the auth counts as traffic
	w.mu.Lock()
	c.idx = len(w.conns)
	w.conns = append(w.conns, c)
	w.mu.Unlock()
	c.record = true
	c.hist = w.latency[c.idx%latencyShards]
	w.authed.Add(1)
	w.open.Add(1)
	release()
	w.readLoop(c)
}

func (w *Worker) fail(err error) {
	w.failed.Add(1)
	w.countErr(reason(err))
}

func (w *Worker) countErr(r string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.errs[r]; !ok && len(w.errs) >= maxErrorKinds {
		r = "other"
	}
	w.errs[r]++
}

// readLoop reads c until it fails or is closed.
func (w *Worker) readLoop(c *client) {
	var err error
	if rc := c.rawConn(); rc != nil {
		err = w.readRaw(c, rc)
	} else {
		for {
			var p protocol.Packet
			if p, err = c.next(); err != nil {
				break
			}
			if err = w.packet(c, p); err != nil {
				break
			}
		}
	}
	c.delivered.Add(c.pending)
	c.dead.Store(true)
	w.open.Add(-1)
	c.nc.Close()
	if !c.done.Load() {
		w.closed.Add(1)
		w.countErr("closed: " + reason(err))
	}
}

// packet handles one server packet (an Op 9 batch packet by packet) and,
// once the buffered input is consumed, publishes its deliveries and sends
// a heartbeat if one is due.
func (w *Worker) packet(c *client, p protocol.Packet) error {
	if p.Op == protocol.OpRaw {
		err := protocol.SplitBatch(p.Body, func(in protocol.Packet) error {
			w.handle(c, in)
			return nil
		})
		if err != nil {
			return err
		}
	} else {
		w.handle(c, p)
	}
	if !c.buffered() {
		w.consumed(c)
	}
	return nil
}

// consumed publishes the deliveries of the consumed input once and sends a
// heartbeat if one is due.
func (w *Worker) consumed(c *client) {
	if c.pending > 0 {
		c.delivered.Add(c.pending)
		c.pending = 0
		c.lastRecv.Store(c.now)
		if c.firstRecv.Load() == 0 {
			c.firstRecv.Store(c.now)
		}
	}
	if hb := w.heartbeat.Load(); hb > 0 {
		w.maybeHeartbeat(c, c.now, hb)
	}
}

// readRaw is readLoop for a TCP connection: it reads the socket itself
// inside rc.Read, into a 64 KiB buffer borrowed from a pool while input
// is flowing and given back (keeping only a partial packet) just before
// the goroutine waits for the poller. net.Conn.Read into the connection's
// own small, growing buffer took 6 read calls per room batch of ~4 KB
// (512, 1 KiB, 2 KiB, 4 KiB, the rest, then EAGAIN) and allocated the grown
// buffers again after each batch; this takes one read and the EAGAIN one.
func (w *Worker) readRaw(c *client, rc syscall.RawConn) error {
	// The handshake may have read more than the AuthReply.
	need, rerr := w.consume(c)
	if rerr != nil {
		return rerr
	}
	err := rc.Read(func(fd uintptr) bool {
		for {
			c.borrow(need)
			n, err := syscall.Read(int(fd), c.buf[c.end:])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				c.giveBack()
				return false // wait for the poller
			case err != nil:
				rerr = err
				return true
			case n == 0:
				rerr = io.EOF
				return true
			}
			c.got(n, len(c.buf)-c.end)
			if need, rerr = w.consume(c); rerr != nil {
				return true
			}
		}
	})
	c.giveBack()
	if rerr != nil {
		return rerr
	}
	return err
}

// consume handles every complete packet in the read buffer and returns how
// many bytes the next (partial) packet needs from c.start.
func (w *Worker) consume(c *client) (need int, err error) {
	for c.end > c.start {
		p, n, err := protocol.Decode(c.buf[c.start:c.end], maxPacket)
		if errors.Is(err, protocol.ErrShort) {
			if c.end-c.start >= protocol.HeaderLen {
				h, _ := protocol.ParseHeader(c.buf[c.start:c.end], maxPacket)
				return int(h.PackLen), nil
			}
			return protocol.HeaderLen, nil
		}
		if err != nil {
			return 0, err
		}
		c.start += n
		if err := w.packet(c, p); err != nil {
			return 0, err
		}
	}
	return protocol.HeaderLen, nil
}

func (w *Worker) handle(c *client, p protocol.Packet) {
	switch {
	case p.Op >= protocol.OpBusinessMin:
		sent, seq, ok := ParsePayload(p.Body)
		c.pending++
		if !ok {
			return
		}
		switch c.seqs.add(seq) {
		case seqReordered, seqTooOld:
			c.reordered.Add(1)
		case seqDuplicate:
			c.duplicates.Add(1)
		}
		if c.record {
			c.hist.Record(c.now - sent)
		}
	case p.Op == protocol.OpHeartbeatReply:
		w.hbReplies.Add(1)
	case p.Op == protocol.OpDisconnect:
		var d disconnect
		if err := sonic.Unmarshal(p.Body, &d); err != nil || d.Code == "" {
			d.Code = "unparsed"
		}
		w.mu.Lock()
		if _, ok := w.discs[d.Code]; ok || len(w.discs) < maxErrorKinds {
			w.discs[d.Code]++
		}
		w.mu.Unlock()
	default:
		w.other.Add(1)
	}
}

// startHeartbeats starts the heartbeat loop once an interval is known.
func (w *Worker) startHeartbeats(spec *ConnectSpec) {
	interval := time.Duration(w.heartbeat.Load())
	w.mu.Lock()
	defer w.mu.Unlock()
	if interval <= 0 || w.hbStop != nil {
		return
	}
	w.hbStop, w.hbDone = make(chan struct{}), make(chan struct{})
	go w.heartbeatLoop(interval, w.hbStop, w.hbDone)
}

// Heartbeat packets: the TCP packet and the masked WebSocket frame.
var (
	hbTCP = protocol.Encode(protocol.Packet{Ver: protocol.Version, Op: protocol.OpHeartbeat})
	hbWS  = func() []byte {
		b, err := ws.CompileFrame(ws.MaskFrame(ws.NewBinaryFrame(hbTCP)))
		if err != nil {
			panic(err)
		}
		return b
	}()
)

// maybeHeartbeat writes a heartbeat on c if its last one is at least
// interval old. Both the connection's reader (after a read, so a busy
// connection heartbeats on time even when the worker is CPU-starved) and
// the heartbeat loop (for idle connections) call it; the CAS on lastHB
// makes one of them win.
func (w *Worker) maybeHeartbeat(c *client, now, interval int64) {
	last := c.lastHB.Load()
	if now-last < interval || !c.lastHB.CompareAndSwap(last, now) {
		return
	}
	if late := now - last - interval; late > 0 {
		for {
			cur := w.hbLag.Load()
			if late <= cur || w.hbLag.CompareAndSwap(cur, late) {
				break
			}
		}
	}
	pkt := hbTCP
	if c.ws {
		pkt = hbWS
	}
	if err := c.writeRaw(pkt); err != nil {
		w.hbErrors.Add(1)
		return
	}
	w.hbSent.Add(1)
}

// heartbeatLoop heartbeats, every tick, each open connection whose last
// heartbeat is at least interval old. A late tick catches up by itself.
func (w *Worker) heartbeatLoop(interval time.Duration, stop, done chan struct{}) {
	defer close(done)
	tick := min(time.Second, max(interval/10, 10*time.Millisecond))
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		conns := w.conns
		w.mu.Unlock()
		for _, c := range conns {
			if c.dead.Load() || c.done.Load() {
				continue
			}
			w.maybeHeartbeat(c, time.Now().UnixNano(), int64(interval))
		}
	}
}

// Stats returns the worker's counters; reset zeroes the delivery counters
// and the latency histogram afterwards (the connection counters stay).
func (w *Worker) Stats(reset bool) Stats {
	w.mu.Lock()
	conns := w.conns
	s := Stats{
		Errors:      copyCounts(w.errs),
		Disconnects: copyCounts(w.discs),
	}
	if reset {
		clear(w.discs)
	}
	w.mu.Unlock()
	s.Attempted, s.Authed, s.Failed = w.attempted.Load(), w.authed.Load(), w.failed.Load()
	s.Open, s.Closed = w.open.Load(), w.closed.Load()
	s.HeartbeatsSent, s.HeartbeatReplies, s.HeartbeatErrors = w.hbSent.Load(), w.hbReplies.Load(), w.hbErrors.Load()
	s.OtherPackets = w.other.Load()
	s.HeartbeatMS = time.Duration(w.heartbeat.Load()).Milliseconds()
	for _, c := range conns {
		if reset {
			s.Delivered += c.delivered.Swap(0)
			s.Reordered += c.reordered.Swap(0)
			s.Duplicates += c.duplicates.Swap(0)
			s.LastRecvUnixNano = max(s.LastRecvUnixNano, c.lastRecv.Swap(0))
			if f := c.firstRecv.Swap(0); f != 0 && (s.FirstRecvUnixNano == 0 || f < s.FirstRecvUnixNano) {
				s.FirstRecvUnixNano = f
			}
		} else {
			s.Delivered += c.delivered.Load()
			s.Reordered += c.reordered.Load()
			s.Duplicates += c.duplicates.Load()
			s.LastRecvUnixNano = max(s.LastRecvUnixNano, c.lastRecv.Load())
			if f := c.firstRecv.Load(); f != 0 && (s.FirstRecvUnixNano == 0 || f < s.FirstRecvUnixNano) {
				s.FirstRecvUnixNano = f
			}
		}
	}
	lat := NewHist()
	for _, h := range w.latency {
		lat.Merge(h)
		if reset {
			h.Reset()
		}
	}
	s.Latency = lat.Snapshot()
	s.HandshakeLatency = w.handshake.Snapshot()
	s.HeartbeatLagMS = time.Duration(w.hbLag.Load()).Milliseconds()
	if reset {
		w.hbLag.Store(0)
	}
	if rss, err := ReadRSS(0); err == nil {
		s.RSSBytes = rss
	}
	s.Workers = 1
	return s
}

func copyCounts(m map[string]int64) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// CloseConns closes every connection, stops the heartbeat loop and waits
// for the readers to end. The counters stay; closes it causes are not
// counted as Closed.
func (w *Worker) CloseConns() {
	w.mu.Lock()
	conns := w.conns
	stop, done := w.hbStop, w.hbDone
	w.hbStop, w.hbDone = nil, nil
	w.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	for _, c := range conns {
		c.done.Store(true)
		c.nc.Close()
	}
	w.readers.Wait()
	w.mu.Lock()
	w.conns = nil
	w.mu.Unlock()
}

// reason reduces an error to a short, low-cardinality description: the
// stage that failed and the cause, without addresses.
func reason(err error) string {
	if err == nil {
		return "eof"
	}
	stage, _, hasStage := strings.Cut(err.Error(), ":")
	var oe *net.OpError
	if errors.As(err, &oe) && err.Error() == oe.Error() {
		stage = oe.Op // a bare net error: its message starts with addresses
	}
	if errors.Is(err, errRefused) {
		return err.Error()
	}
	var cause string
	var errno syscall.Errno
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		cause = "eof"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		cause = "timeout"
	case errors.Is(err, context.Canceled):
		cause = "canceled"
	case errors.Is(err, net.ErrClosed):
		cause = "closed"
	case errors.As(err, &errno):
		cause = errno.Error()
	default:
		cause = err.Error()
		if i := strings.LastIndex(cause, ": "); i >= 0 {
			cause = cause[i+2:]
		}
	}
	if len(cause) > 80 {
		cause = cause[:80]
	}
	if !hasStage || stage == cause {
		return cause
	}
	return stage + ": " + cause
}

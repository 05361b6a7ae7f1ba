package comet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/gopkg/util/gopool"
	"github.com/bytedance/sonic"
	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

// Connection states. Only the reader moves a connection from handshake to
// authed; anyone may move it to closing; the close callback to closed.
const (
	stHandshake uint32 = iota
	stAuthed
	stClosing
	stClosed
)

// conn.flags, guarded by conn.mu.
const (
	fWriting   uint8 = 1 << iota // a writer owns the queue
	fClosing                     // Op 6 queued (or closing without one): nothing more is queued
	fHold                        // auth in progress: pushes queue but wait for Op 8
	fUpgraded                    // WebSocket: the HTTP upgrade is answered
	fReplyWait                   // the reader waits in waitPending for asynchronous replies
)

// conn.rf: reader-owned bits.
const (
	rfConnected    uint8 = 1 << iota // Logic.Connect succeeded: Disconnect on close (unless replaced)
	rfRegistered                     // the key is registered in its bucket
	rfCounted                        // counted in Server.authed
	rfUpgraded                       // WebSocket: the HTTP upgrade is answered (fUpgraded for other goroutines)
	rfReplyPending                   // replies queued by the reader, not yet handed to a writer
)

// refusals decided at accept and applied once the WebSocket upgrade is done.
const (
	refuseNone uint8 = iota
	refuseTooMany
	refuseDraining
)

// conn is one client connection. It is kept small (one 256-byte
// allocation, no goroutine, no buffer while idle; fields ordered to avoid
// padding): see the package doc.
type conn struct {
	// context.Background(): it makes *conn the netpoll connection context
	// handed back to OnRequest, without another allocation.
	context.Context

	s  *Server
	nc netpoll.Connection

	// Reader-owned: touched only by the connection's reader (netpoll's
	// OnRequest task) and by the close callback, which netpoll runs once no
	// reader is active.
	userID int64
	key    string // before auth (WebSocket): the token from the upgrade's query string
	frag   []byte // WebSocket: a fragmented message being assembled
	idle   int64  // idle timeout (3x the heartbeat interval), ns
	lastHB int64  // last Logic.Heartbeat, unix ns
	id     uint64 // ConnID suffix, unique in the server (see connID)
	wfn    func() // c.writeLoop, bound once (passing c.writeLoop to gopool.Go allocates every time)

	// Room membership, guarded by the bucket lock of room.id (written by
	// the reader only).
	room         *room
	rprev, rnext *conn

	// Timer wheel links, guarded by wheel.mu.
	wprev, wnext *conn
	wdeadline    int64

	since    atomic.Int64 // accept time; from closing on, when the close began
	lastRead atomic.Int64 // last packet or frame read (coarse clock)

	mu  sync.Mutex // guards the outbound side: flags, q, accepts
	wmu sync.Mutex // held by the writer while it writes and flushes

	q       *queue
	accepts []int32 // sorted business ops

	state   atomic.Uint32
	wslot   int32 // guarded by wheel.mu; -1: not filed
	preAuth int32 // reader-owned: bytes read before authentication

	tr      uint8 // reader-owned
	refuse  uint8 // reader-owned
	rf      uint8 // reader-owned bits (rfConnected...)
	flags   uint8
	pending uint16 // guarded by mu: replies announced by Later, not yet queued by Reply
	dead    bool   // guarded by wmu: the close callback ran, write nothing more
}

// queue is a connection's pending output: encoded frames, most of them
// shared with other connections. Queues are pooled; an idle connection has
// none.
type queue struct {
	items [][]byte
	bytes int
}

var queuePool = sync.Pool{New: func() any { return &queue{items: make([][]byte, 0, 8)} }}

func getQueue() *queue { return queuePool.Get().(*queue) }

func putQueue(q *queue) {
	if q == nil {
		return
	}
	if cap(q.items) > 256 {
		return // let an overgrown queue go
	}
	clear(q.items)
	q.items, q.bytes = q.items[:0], 0
	queuePool.Put(q)
}

// startWriter runs the writer on a pooled goroutine (fWriting is set).
func (c *conn) startWriter() { gopool.Go(c.wfn) }

// connID is the connection's ConnID (see ConnectRequest.ConnID).
func (c *conn) connID() string {
	return c.s.connPrefix + strconv.FormatUint(c.id, 36)
}

// errClosing stops the reader of a connection that is already closing.
var errClosing = errors.New("comet: connection closing")

// ---------------------------------------------------------------- reading

// serve is the connection state machine, run by netpoll's OnRequest task
// while the connection has input. It handles whole packets (pipelined ones
// included) until the input is consumed, then hands queued replies to the
// writer (writing them in this goroutine).
func (c *conn) serve() {
	r := c.nc.Reader()
	for r.Len() > 0 {
		if c.state.Load() >= stClosing {
			break
		}
		err := c.readOne(r)
		_ = r.Release()
		if err != nil {
			c.fail(err)
			break
		}
	}
	if c.state.Load() >= stClosing {
		// netpoll calls OnRequest again while input remains: drop it.
		_ = r.Skip(r.Len())
		_ = r.Release()
	}
	c.flushReplies()
}

// beforeBlock implements blocker: a read is about to wait for bytes, so
// the replies queued so far go out first.
func (c *conn) beforeBlock() { c.flushReplies() }

func (c *conn) readOne(r streamReader) error {
	cfg := &c.s.cfg
	if c.tr == trTCP {
		maxPack := 0
		if c.state.Load() == stHandshake {
			if maxPack = cfg.MaxPreAuthBytes - int(c.preAuth); maxPack < protocol.HeaderLen {
				return closeErr(protocol.CodePacketTooLarge, "pre-auth byte limit exceeded")
			}
		}
		p, n, err := readPacket(r, c, cfg.MaxBody, maxPack)
		if err != nil {
			return err
		}
		c.gotBytes(n)
		c.maybeHeartbeat()
		return c.handle(p)
	}
	if c.rf&rfUpgraded == 0 {
		return c.upgrade(r)
	}
	maxPayload := protocol.HeaderLen + cfg.MaxBody
	if c.state.Load() == stHandshake {
		left := cfg.MaxPreAuthBytes - int(c.preAuth) - 14 // 14: the largest frame header we accept pre-auth
		if left < 0 {
			return closeErr(protocol.CodePacketTooLarge, "pre-auth byte limit exceeded")
		}
		maxPayload = min(maxPayload, left)
	}
	f, n, err := readWSFrame(r, c, maxPayload)
	if err != nil {
		return err
	}
	c.gotBytes(n)
	c.maybeHeartbeat()
	return c.handleFrame(f, maxPayload)
}

func (c *conn) gotBytes(n int) {
	metricBytesIn.Add(float64(n))
	c.lastRead.Store(c.s.now())
	if c.state.Load() == stHandshake {
		c.preAuth += int32(n)
	}
}

// upgrade answers the WebSocket upgrade request at the head of the input.
func (c *conn) upgrade(r streamReader) error {
	limit := c.s.cfg.MaxPreAuthBytes
	n := min(r.Len(), limit)
	b, err := r.Peek(n)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix([]byte("GET "), b[:min(len(b), 4)]) {
		return errUnreadable
	}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if n >= limit {
			c.closeAfter([]byte("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), protocol.CodePacketTooLarge)
			return errClosing
		}
		// Wait for more than the n bytes looked at: not r.Len()+1, as
		// the rest of the request may have arrived since the Peek (and
		// then no further byte may ever come).
		_, err := need(r, c, n+1)
		return err
	}
	reqLen := end + 4
	var resp bytes.Buffer
	u := ws.Upgrader{OnRequest: c.checkURI}
	_, herr := u.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(b[:reqLen]), &resp})
	c.gotBytes(reqLen)
	if err := r.Skip(reqLen); err != nil {
		return err
	}
	if herr != nil {
		c.closeAfter(resp.Bytes(), protocol.CodeProtocolError)
		return errClosing
	}
	c.rf |= rfUpgraded
	c.mu.Lock()
	c.flags |= fUpgraded
	c.mu.Unlock()
	c.reply(resp.Bytes())
	if c.refuse != refuseNone {
		c.refuseNow()
		return errClosing
	}
	return nil
}

// refuseNow closes a connection refused at accept, with its Op 6.
func (c *conn) refuseNow() {
	if c.refuse == refuseDraining {
		c.closeWith(protocol.CodeServerDraining, "server shutting down", c.s.drainInfo())
		return
	}
	c.closeWith(protocol.CodeTooManyConns, "too many connections from this address", nil)
}

// checkURI accepts GET /sub with an optional query string and keeps its
// token parameter.
func (c *conn) checkURI(uri []byte) error {
	path, query, _ := bytes.Cut(uri, []byte("?"))
	if p := string(path); p != "/sub" && p != "/sub/" {
		return ws.RejectConnectionError(ws.RejectionStatus(404), ws.RejectionReason("not found"))
	}
	if len(query) > 0 {
		// ParseQuery keeps the pairs it could parse when another one is
		// malformed (say a stray %): the token is still good.
		v, _ := url.ParseQuery(string(query))
		c.key = v.Get("token") // kept in key until auth
	}
	return nil
}

// errPeerClose ends reading after a WebSocket close frame.
var errPeerClose = errors.New("comet: peer sent close")

func (c *conn) handleFrame(f wsFrame, maxPayload int) error {
	switch f.op {
	case wsOpClose:
		var code []byte // echo the status code, if any
		if len(f.payload) >= 2 {
			code = f.payload[:2]
		}
		c.closeAfter(wsControl(wsOpClose, code), "")
		return errPeerClose
	case wsOpPing:
		c.reply(wsControl(wsOpPong, f.payload))
		return nil
	case wsOpPong:
		return nil
	case wsOpText, wsOpBinary:
		if c.frag != nil {
			return errUnreadable // a new message inside a fragmented one
		}
		if !f.fin {
			c.frag = append(make([]byte, 0, max(len(f.payload), 64)), f.payload...)
			return nil
		}
		return c.handleData(f.payload)
	default: // continuation
		if c.frag == nil {
			return errUnreadable
		}
		if len(c.frag)+len(f.payload) > maxPayload {
			return closeErr(protocol.CodePacketTooLarge, "message exceeds the body limit")
		}
		c.frag = append(c.frag, f.payload...)
		if !f.fin {
			return nil
		}
		data := c.frag
		c.frag = nil
		return c.handleData(data)
	}
}

// handleData handles the packets of one WebSocket message: normally one,
// but several whole packets are accepted too.
func (c *conn) handleData(b []byte) error {
	for len(b) > 0 {
		if c.state.Load() >= stClosing {
			return errClosing
		}
		p, n, err := protocol.Decode(b, c.s.cfg.MaxBody)
		switch {
		case errors.Is(err, protocol.ErrTooLarge):
			return closeErr(protocol.CodePacketTooLarge, "packet exceeds the body limit")
		case err != nil: // short, or a bad header: a frame must hold whole packets
			return errUnreadable
		}
		if err := c.handle(p); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// fail closes the connection after a reading error.
func (c *conn) fail(err error) {
	var cr *closeReason
	switch {
	case errors.As(err, &cr):
		c.closeWith(cr.code, cr.reason, nil)
	case errors.Is(err, errUnreadable):
		metricCloses.WithLabelValues(protocol.CodeProtocolError).Inc()
		c.abort()
	case errors.Is(err, errClosing), errors.Is(err, errPeerClose):
	default:
		// A read error: netpoll closed the connection (peer gone or closed
		// by us). Make sure it is closed.
		c.abort()
	}
}

// ---------------------------------------------------------------- ops

func (c *conn) handle(p protocol.Packet) error {
	if c.state.Load() == stHandshake {
		if p.Op != protocol.OpAuth {
			return closeErr(protocol.CodeUnauthorized, "the first packet must be auth (op 7)")
		}
		return c.auth(p)
	}
	switch p.Op {
	case protocol.OpHeartbeat:
		return c.heartbeat(p)
	case protocol.OpChangeRoom:
		return c.changeRoom(p)
	case protocol.OpSub, protocol.OpUnsub:
		c.sub(p)
		return nil
	default:
		return c.receive(p)
	}
}

func (c *conn) auth(p protocol.Packet) error {
	s := c.s
	ctx, cancel := context.WithDeadline(s.ctx, time.Unix(0, c.since.Load()+int64(s.cfg.HandshakeTimeout)))
	defer cancel()
	rep, err := s.logic.Connect(ctx, &ConnectRequest{
		Server:     s.cfg.Node,
		RemoteAddr: c.nc.RemoteAddr().String(),
		Transport:  transportName(c.tr),
		Body:       bytes.Clone(p.Body),
		QueryToken: c.key,
		ConnID:     c.connID(),
	})
	c.key = ""
	if err != nil {
		reason := "authentication failed"
		var ce *CloseError
		if errors.As(err, &ce) && ce.Reason != "" {
			reason = ce.Reason
		}
		s.log.Debug("comet: connect refused", "remote", c.nc.RemoteAddr().String(), "err", err)
		return closeErr(CloseCode(err), reason)
	}
	if rep == nil || rep.Key == "" {
		s.log.Error("comet: Logic.Connect returned no key")
		return closeErr(protocol.CodeInternal, "no session key")
	}
	c.userID, c.key = rep.UserID, rep.Key
	c.rf |= rfConnected // from here on, closing calls Logic.Disconnect
	if c.state.Load() != stHandshake {
		return errClosing
	}
	hb := rep.Heartbeat
	if hb <= 0 {
		hb = s.cfg.Heartbeat
	}
	c.idle = 3 * int64(hb)
	c.lastHB = s.wallNow()

	// Hold pushes until Op 8 is queued in front of them (after what was
	// queued before, e.g. a pipelined WebSocket upgrade's 101).
	c.mu.Lock()
	c.accepts = addOps(nil, rep.Accepts)
	c.flags |= fHold
	holdAt := 0
	if c.q != nil {
		holdAt = len(c.q.items)
	}
	c.mu.Unlock()
	if s.hookRegister != nil {
		s.hookRegister(c)
	}
	// Authed before registered: once c has replaced a connection in the
	// bucket, c must not fail, or that connection would be left open but
	// unreachable. A close that began meanwhile leaves the bucket alone.
	var old *conn
	if !c.state.CompareAndSwap(stHandshake, stAuthed) {
		err = errClosing
	} else if old, err = s.register(c); err == nil {
		c.rf |= rfRegistered
	}
	if err != nil {
		c.mu.Lock()
		c.flags &^= fHold
		c.mu.Unlock()
		return err
	}
	c.rf |= rfCounted
	s.authed.Add(1)
	// File it by its idle deadline (Logic's heartbeat may be shorter than
	// the handshake timeout it is filed by).
	s.wheel.add(c, c.lastRead.Load()+c.idle)
	if old != nil {
		old.closeWith(protocol.CodeReplaced, "another connection logged in with the same key", nil)
	}
	if err := protocol.ValidRoom(rep.Room); err != nil {
		s.log.Warn("comet: room from Logic.Connect refused; not joined", "user", c.userID, "err", err)
	} else if rep.Room != "" {
		s.joinRoom(s.ctx, c, rep.Room)
	}
	reply := encodePacket(c.tr, protocol.Packet{Ver: p.Ver, Op: protocol.OpAuthReply, Seq: p.Seq, Body: rep.Body})
	c.mu.Lock()
	if c.flags&fClosing == 0 {
		if c.q == nil {
			c.q = getQueue()
		}
		c.q.items = slices.Insert(c.q.items, min(holdAt, len(c.q.items)), reply)
		c.q.bytes += len(reply)
	}
	c.flags &^= fHold
	c.mu.Unlock()
	c.rf |= rfReplyPending
	return nil
}

func (c *conn) heartbeat(p protocol.Packet) error {
	var n int32
	if c.room != nil {
		n = c.s.roomOnline(c.room)
	}
	var body [4]byte
	body[0], body[1], body[2], body[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	c.reply(encodePacket(c.tr, protocol.Packet{Ver: p.Ver, Op: protocol.OpHeartbeatReply, Seq: p.Seq, Body: body[:]}))
	return nil
}

// maybeHeartbeat refreshes the session (Logic.Heartbeat) of an
// authenticated connection when a heartbeat interval has passed since the
// last refresh. The reader calls it for every packet or WebSocket frame
// read, whatever its op, so that a client that sends traffic or WebSocket
// pings but rarely Op 2 keeps its session; it costs a clock read otherwise
// (no timer per connection).
func (c *conn) maybeHeartbeat() {
	if c.state.Load() != stAuthed {
		return
	}
	now := c.s.wallNow()
	if now-c.lastHB < c.idle/3 {
		return
	}
	c.lastHB = now
	if c.s.hb != nil {
		c.s.hb.add(ConnRef{UserID: c.userID, Key: c.key, ConnID: c.connID()})
		return
	}
	c.flushReplies()
	ctx, cancel := context.WithTimeout(c.s.ctx, c.s.cfg.LogicTimeout)
	defer cancel()
	if err := c.s.logic.Heartbeat(ctx, c.s.cfg.Node, c.userID, c.key, c.connID()); err != nil {
		c.s.log.Debug("comet: Logic.Heartbeat failed", "user", c.userID, "key", c.key, "err", err)
	}
}

func (c *conn) changeRoom(p protocol.Packet) error {
	if err := protocol.ValidRoom(string(p.Body)); err != nil {
		return closeErr(protocol.CodeProtocolError, "bad room key: at most "+strconv.Itoa(protocol.MaxRoomLen)+" bytes of printable ASCII without commas")
	}
	c.flushReplies() // RoomJoined may take a while
	c.s.joinRoom(c.s.ctx, c, string(p.Body))
	c.reply(encodePacket(c.tr, protocol.Packet{Ver: p.Ver, Op: protocol.OpChangeRoomReply, Seq: p.Seq, Body: p.Body}))
	return nil
}

// sub handles Op 14 and Op 16. The reply (Op 15, Op 17) lists the ops
// applied, comma-separated: for Op 14 the requested ops the connection now
// accepts (an op beyond the protocol.MaxAccepts bound is left out), for
// Op 16 the requested ops it no longer accepts. Items that are not op
// numbers are left out of both.
func (c *conn) sub(p protocol.Packet) {
	ops := parseOps(p.Body)
	slices.Sort(ops)
	ops = slices.Compact(ops)
	c.mu.Lock()
	if p.Op == protocol.OpSub {
		c.accepts = addOps(c.accepts, ops)
		ops = slices.DeleteFunc(ops, func(op int32) bool {
			_, ok := slices.BinarySearch(c.accepts, op)
			return !ok
		})
	} else {
		c.accepts = removeOps(c.accepts, ops)
	}
	c.mu.Unlock()
	var body []byte
	for i, op := range ops {
		if i > 0 {
			body = append(body, ',')
		}
		body = strconv.AppendInt(body, int64(op), 10)
	}
	c.reply(encodePacket(c.tr, protocol.Packet{Ver: p.Ver, Op: p.Op + 1, Seq: p.Seq, Body: body}))
}

// Bodies of the replies comet makes when Logic.Receive fails.
var (
	bodyInternal    = []byte(`{"code":"internal","message":"internal error"}`)
	bodyUnavailable = []byte(`{"code":"unavailable","message":"service unavailable, retry later"}`)
)

// replyOp is the reply op of a request op for the error replies comet
// makes itself: op+1 for the IM requests that have a reply op, else the
// same op.
func replyOp(op int32) int32 {
	switch op {
	case protocol.OpSendMsg, protocol.OpSync, protocol.OpAck:
		return op + 1
	}
	return op
}

func (c *conn) receive(p protocol.Packet) error {
	c.flushReplies() // do not hold earlier replies behind a logic call
	s := c.s
	req := &ReceiveRequest{Server: s.cfg.Node, UserID: c.userID, Key: c.key, Packet: p}
	if p.Op == protocol.OpSendMsg {
		// Logic may answer later (AsyncReplies): the next packets are read
		// meanwhile, the next Op 4 included.
		req.Replies = c
	} else {
		// Any other op sees the effects of the sends before it (a Sync
		// after a send finds the message) and is answered after them.
		c.waitPending(0)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.LogicTimeout)
	rep, err := s.logic.Receive(ctx, req)
	cancel()
	if rep != nil || err != nil {
		c.waitPending(0) // replies in request order
	}
	if err != nil {
		var ce *CloseError
		if errors.As(err, &ce) {
			return closeErr(ce.Code, ce.Reason)
		}
		body := bodyInternal
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			body = bodyUnavailable
		}
		s.log.Warn("comet: Logic.Receive failed", "op", p.Op, "user", c.userID, "err", err)
		c.reply(encodePacket(c.tr, protocol.Packet{Ver: p.Ver, Op: replyOp(p.Op), Seq: p.Seq, Body: body}))
		return nil
	}
	if rep != nil {
		out := *rep
		out.Ver, out.Seq = p.Ver, p.Seq
		c.reply(encodePacket(c.tr, out))
	}
	return nil
}

// maxPendingReplies bounds the asynchronous replies (SendAcks of Op 4
// being committed) a connection may have announced and not received: the
// reader waits at this many before it reads on.
const maxPendingReplies = 256

// Later implements AsyncReplies (on the reader's goroutine).
func (c *conn) Later() {
	c.waitPending(maxPendingReplies - 1)
	c.mu.Lock()
	c.pending++
	c.mu.Unlock()
}

// Reply implements AsyncReplies: it queues p for the connection's writer
// (never writing in the caller: a flush may block up to WriteTimeout on a
// slow consumer's full socket, and the caller is the committer's fan-out,
// which every connection's acks and events go through), then wakes the
// reader if it waits for it.
func (c *conn) Reply(p protocol.Packet) {
	c.enqueue(encodePacket(c.tr, p), 0, false, false)
	c.mu.Lock()
	c.pending--
	wake := c.pending == 0 || c.pending == maxPendingReplies-1
	wake = wake && c.flags&fReplyWait != 0
	if wake {
		c.flags &^= fReplyWait
	}
	c.mu.Unlock()
	if wake {
		w := c.replyWaiter()
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// waitPending waits until the connection has at most limit asynchronous
// replies pending (reader only).
func (c *conn) waitPending(limit uint16) {
	c.mu.Lock()
	n := c.pending
	c.mu.Unlock()
	if n <= limit {
		return
	}
	w := c.replyWaiter()
	w.mu.Lock()
	for {
		c.mu.Lock()
		if c.pending <= limit {
			c.mu.Unlock()
			break
		}
		c.flags |= fReplyWait
		c.mu.Unlock()
		w.cond.Wait()
	}
	w.mu.Unlock()
}

// replyWaiters are where readers wait for asynchronous replies (a
// connection has no room for a condition variable of its own). Reply
// broadcasts on its connection's shard; every waiter rechecks.
var replyWaiters [64]replyWaiter

func init() {
	for i := range replyWaiters {
		replyWaiters[i].cond.L = &replyWaiters[i].mu
	}
}

type replyWaiter struct {
	mu   sync.Mutex
	cond sync.Cond
}

func (c *conn) replyWaiter() *replyWaiter { return &replyWaiters[c.id%uint64(len(replyWaiters))] }

// parseOps parses a comma-separated list of op numbers, skipping what is
// not a number, at most maxAccepts of them.
func parseOps(b []byte) []int32 {
	var ops []int32
	for f := range strings.SplitSeq(string(b), ",") {
		v, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil {
			continue
		}
		if ops = append(ops, int32(v)); len(ops) == maxAccepts {
			break
		}
	}
	return ops
}

// addOps merges ops into the sorted set dst, keeping at most maxAccepts.
func addOps(dst []int32, ops []int32) []int32 {
	for _, op := range ops {
		i, found := slices.BinarySearch(dst, op)
		if !found && len(dst) < maxAccepts {
			dst = slices.Insert(dst, i, op)
		}
	}
	return dst
}

func removeOps(dst []int32, ops []int32) []int32 {
	for _, op := range ops {
		if i, found := slices.BinarySearch(dst, op); found {
			dst = slices.Delete(dst, i, i+1)
		}
	}
	return dst
}

// ---------------------------------------------------------------- writing

// reply queues a frame produced by the reader; it goes out when the reader
// is done with its input or is about to wait (flushReplies).
func (c *conn) reply(b []byte) {
	c.enqueue(b, 0, false, true)
}

// push queues a frame from another goroutine and makes sure a writer runs.
// With filter, a business op reaches the connection only if it accepts it.
func (c *conn) push(op int32, b []byte, filter bool) {
	c.enqueue(b, op, filter, false)
}

func (c *conn) enqueue(b []byte, op int32, filter, fromReader bool) {
	c.mu.Lock()
	if c.flags&fClosing != 0 {
		c.mu.Unlock()
		return
	}
	if filter && op >= protocol.OpBusinessMin {
		if _, ok := slices.BinarySearch(c.accepts, op); !ok {
			c.mu.Unlock()
			return
		}
	}
	q := c.q
	if q != nil && len(q.items) > 0 && (len(q.items) >= c.s.cfg.OutQueue || q.bytes+len(b) > c.s.cfg.OutQueueBytes) {
		c.mu.Unlock()
		metricDropFull.Inc()
		c.s.dropped.Add(1)
		c.closeWith(protocol.CodeSlowConsumer, "outbound queue full", nil)
		return
	}
	if q == nil {
		q = getQueue()
		c.q = q
	}
	q.items = append(q.items, b)
	q.bytes += len(b)
	start := !fromReader && c.flags&(fWriting|fHold) == 0
	if start {
		c.flags |= fWriting
	}
	c.mu.Unlock()
	if fromReader {
		c.rf |= rfReplyPending
	}
	if start {
		c.startWriter()
	}
}

// flushReplies hands the reader's queued replies to a writer: it writes
// them in the calling goroutine (one round; more goes to a pooled writer).
func (c *conn) flushReplies() {
	if c.rf&rfReplyPending == 0 {
		return
	}
	c.rf &^= rfReplyPending
	c.mu.Lock()
	if c.flags&(fWriting|fHold) != 0 || c.q == nil || len(c.q.items) == 0 {
		c.mu.Unlock()
		return
	}
	c.flags |= fWriting
	c.mu.Unlock()
	c.write(1)
}

func (c *conn) writeLoop() { c.write(0) }

// write is the connection's only writer (fWriting is set): it takes
// everything queued, writes it and flushes once, and repeats while there is
// more (at most rounds times when rounds > 0; then a pooled writer takes
// over). When the connection is closing and its queue is empty, it closes.
func (c *conn) write(rounds int) {
	for round := 0; ; round++ {
		c.mu.Lock()
		if c.flags&(fHold|fClosing) == fHold {
			// Auth is placing Op 8; the reader writes after it.
			c.flags &^= fWriting
			c.mu.Unlock()
			return
		}
		q := c.q
		if q == nil || len(q.items) == 0 {
			closing := c.flags&fClosing != 0
			c.flags &^= fWriting
			c.mu.Unlock()
			if closing {
				_ = c.nc.Close()
			}
			return
		}
		if rounds > 0 && round == rounds {
			c.mu.Unlock()
			c.startWriter()
			return
		}
		c.q = nil
		c.mu.Unlock()
		err := c.flush(q.items)
		putQueue(q)
		if err != nil {
			c.writeFailed(err)
			return
		}
	}
}

// Writer batching. netpoll's sendmsg takes at most 32 iovecs and
// WriteDirect walks the unflushed nodes, so at most flushBatch nodes go
// into one Flush. When several frames are queued, the small ones are
// copied back to back into pooled buffers (one iovec instead of many).
const (
	flushBatch   = 32
	coalesceMax  = 2 << 10
	writeBufSize = 16 << 10
)

var writeBufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, writeBufSize)
	return &b
}}

// flusher hands frames to a netpoll Writer with WriteDirect: zero-copy
// nodes pointing at our immutable frames or pooled buffers, so the output
// buffer never mallocs (nor keeps, while idle) a buffer of its own.
type flusher struct {
	w      netpoll.Writer
	cur    *[]byte // pooled buffer being filled
	mark   int     // bytes of *cur already handed to w
	pooled [4]*[]byte
	npool  int
	extra  []*[]byte // pooled buffers beyond the 4 in pooled
	nodes  int
	n      int
}

func (f *flusher) direct(b []byte) error {
	if err := f.w.WriteDirect(b, 0); err != nil {
		return err
	}
	f.n += len(b)
	if f.nodes++; f.nodes == flushBatch {
		f.nodes = 0
		return f.w.Flush()
	}
	return nil
}

// pending hands over the copied bytes not handed over yet.
func (f *flusher) pending() error {
	if f.cur == nil || len(*f.cur) == f.mark {
		return nil
	}
	b := (*f.cur)[f.mark:]
	f.mark = len(*f.cur)
	return f.direct(b)
}

func (f *flusher) copy(b []byte) error {
	if f.cur == nil || cap(*f.cur)-len(*f.cur) < len(b) {
		if err := f.pending(); err != nil {
			return err
		}
		f.cur = writeBufPool.Get().(*[]byte)
		*f.cur = (*f.cur)[:0]
		f.mark = 0
		if f.npool < len(f.pooled) {
			f.pooled[f.npool] = f.cur
			f.npool++
		} else {
			f.extra = append(f.extra, f.cur)
		}
	}
	*f.cur = append(*f.cur, b...)
	return nil
}

// release returns the pooled buffers; only after a successful Flush, when
// netpoll no longer needs them.
func (f *flusher) release() {
	for _, b := range f.pooled[:f.npool] {
		writeBufPool.Put(b)
	}
	for _, b := range f.extra {
		writeBufPool.Put(b)
	}
}

// flush writes items and flushes (writev). The last item is always handed
// over as it is, so that what netpoll keeps after the flush (its tail node)
// is a frame, never a pooled buffer.
func (c *conn) flush(items [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return errClosing
	}
	f := flusher{w: c.nc.Writer()}
	last := len(items) - 1
	for i, b := range items {
		var err error
		switch {
		case len(b) == 0:
		case i < last && len(b) <= coalesceMax:
			err = f.copy(b)
		default:
			if err = f.pending(); err == nil {
				err = f.direct(b)
			}
		}
		if err != nil {
			return err
		}
	}
	if err := f.pending(); err != nil {
		return err
	}
	if err := f.w.Flush(); err != nil {
		return err // netpoll may still hold the pooled buffers: leave them to the GC
	}
	f.release()
	metricBytesOut.Add(float64(f.n))
	return nil
}

func (c *conn) writeFailed(err error) {
	c.mu.Lock()
	wasClosing := c.flags&fClosing != 0
	c.flags |= fClosing
	c.flags &^= fWriting
	q := c.q
	c.q = nil
	c.mu.Unlock()
	putQueue(q)
	if errors.Is(err, netpoll.ErrWriteTimeout) && !wasClosing {
		// Cut as a slow consumer (once: a close already under way, say
		// for a full queue, was counted then).
		metricDropWrite.Inc()
		c.s.dropped.Add(1)
		metricCloses.WithLabelValues(protocol.CodeSlowConsumer).Inc()
	}
	c.setClosing()
	_ = c.nc.Close()
}

// ---------------------------------------------------------------- closing

// drainInfo are the extra fields of Op 6 server_draining.
type drainInfo struct {
	reconnectAfter time.Duration
	addrs          []string // for TCP clients
	wsAddrs        []string // for WebSocket clients; nil: addrs
}

type disconnectBody struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

type drainBody struct {
	Code             string   `json:"code"`
	Reason           string   `json:"reason"`
	ReconnectAfterMs int64    `json:"reconnect_after_ms"`
	Addrs            []string `json:"addrs"`
}

// disconnectPacket encodes Op 6 for transport tr (a WebSocket close frame
// follows it).
func disconnectPacket(tr uint8, code, reason string, d *drainInfo) []byte {
	var body []byte
	var err error
	if d != nil {
		addrs := d.addrs
		if tr == trWS && d.wsAddrs != nil {
			addrs = d.wsAddrs
		}
		if addrs == nil {
			addrs = []string{}
		}
		body, err = sonic.Marshal(drainBody{Code: code, Reason: reason, ReconnectAfterMs: d.reconnectAfter.Milliseconds(), Addrs: addrs})
	} else {
		body, err = sonic.Marshal(disconnectBody{Code: code, Reason: reason})
	}
	if err != nil {
		body = []byte(`{"code":"` + code + `"}`)
	}
	b := encodePacket(tr, protocol.Packet{Ver: protocol.Version, Op: protocol.OpDisconnect, Body: body})
	if tr == trWS {
		status := ws.StatusNormalClosure
		switch code {
		case protocol.CodeServerDraining:
			status = ws.StatusGoingAway
		case protocol.CodePacketTooLarge:
			status = ws.StatusMessageTooBig
		case protocol.CodeUnauthorized, protocol.CodeTooManyConns, protocol.CodeSlowConsumer:
			status = ws.StatusPolicyViolation
		}
		b = append(b, wsClose(status)...)
	}
	return b
}

// closeWith closes the connection on purpose: Op 6 {code, reason} (with
// the drain fields when d is set) goes out after what is queued (instead of
// it for slow_consumer), then the connection closes. It is safe from any
// goroutine and does nothing on a closing connection.
func (c *conn) closeWith(code, reason string, d *drainInfo) {
	c.mu.Lock()
	upgraded := c.flags&fUpgraded != 0
	closing := c.flags&fClosing != 0
	c.mu.Unlock()
	if closing {
		return
	}
	var msg []byte
	if c.tr == trTCP || upgraded {
		msg = disconnectPacket(c.tr, code, reason, d)
	}
	c.closeAfter(msg, code)
}

// closeAfter marks the connection closing, queues msg (if any) and makes
// sure a writer runs; the writer closes the connection once the queue is
// written. code labels the close metric ("" for closes the client asked for).
func (c *conn) closeAfter(msg []byte, code string) {
	c.mu.Lock()
	if c.flags&fClosing != 0 {
		c.mu.Unlock()
		return
	}
	c.flags |= fClosing
	if code == protocol.CodeSlowConsumer && c.q != nil {
		putQueue(c.q)
		c.q = nil
	}
	if msg != nil {
		if c.q == nil {
			c.q = getQueue()
		}
		c.q.items = append(c.q.items, msg)
		c.q.bytes += len(msg)
	}
	start := c.flags&fWriting == 0
	if start {
		c.flags |= fWriting
	}
	c.mu.Unlock()
	c.setClosing()
	if code != "" {
		metricCloses.WithLabelValues(code).Inc()
	}
	if start {
		c.startWriter()
	}
}

// abort closes at once, without Op 6.
func (c *conn) abort() {
	c.mu.Lock()
	c.flags |= fClosing
	q := c.q
	c.q = nil
	c.mu.Unlock()
	putQueue(q)
	c.setClosing()
	_ = c.nc.Close()
}

// setClosing moves the state to closing and gives the close WriteTimeout
// (plus a second) to finish before the wheel forces it.
func (c *conn) setClosing() {
	for {
		st := c.state.Load()
		if st >= stClosing {
			return
		}
		if c.state.CompareAndSwap(st, stClosing) {
			break
		}
	}
	now := c.s.now()
	c.since.Store(now)
	c.s.wheel.add(c, now+int64(c.s.cfg.WriteTimeout)+int64(time.Second))
}

// onClosed is the netpoll close callback: it runs once, after the reader
// and before netpoll releases the connection's buffers.
func (c *conn) onClosed(netpoll.Connection) error {
	s := c.s
	c.wmu.Lock()
	c.dead = true
	c.wmu.Unlock()
	c.mu.Lock()
	c.flags |= fClosing
	q := c.q
	c.q = nil
	c.mu.Unlock()
	putQueue(q)
	c.state.Store(stClosed)
	s.wheel.remove(c)
	if c.room != nil {
		s.leaveRoom(c)
	}
	if c.rf&rfCounted != 0 {
		s.authed.Add(-1)
	}
	if c.rf&rfRegistered != 0 {
		s.unregister(c) // unless a newer connection took the key
	}
	// Tell logic about every connection it accepted, replaced ones and ones
	// refused here with "key in use" included: the ConnID lets logic remove
	// the session only if it is still this connection's.
	if c.rf&rfConnected != 0 {
		s.disconnect(c.userID, c.key, c.connID())
	}
	c.frag = nil
	s.releaseIP(remoteIP(c.nc))
	if c.tr == trWS {
		s.wsLive.Add(-1)
		metricConnsWS.Dec()
	} else {
		s.tcpLive.Add(-1)
		metricConnsTCP.Dec()
	}
	s.live.Add(-1)
	return nil
}

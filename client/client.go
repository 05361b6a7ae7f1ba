package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/protocol"
)

// AuthReply is the body of Op 8, the server's answer to a successful Auth.
type AuthReply struct {
	UserID       int64  `json:"user_id"`
	Key          string `json:"key"`
	HeartbeatS   int    `json:"heartbeat_s"`
	ServerTimeMs int64  `json:"server_time_ms"`
	Node         string `json:"node"`
}

// authReq is the body of Op 7.
type authReq struct {
	Token    string  `json:"token"`
	Key      string  `json:"key,omitempty"`
	RoomID   string  `json:"room_id,omitempty"`
	Platform string  `json:"platform,omitempty"`
	Accepts  []int32 `json:"accepts,omitempty"`
}

// State is the connection state of a Client.
type State int32

// States. A Client starts Connected (Dial returns only then) and ends Closed.
const (
	// StateConnected: authenticated; requests work.
	StateConnected State = iota
	// StateDisconnected: the connection just ended (StateChange.Err says
	// why); a reconnect follows if Config.Reconnect allows it.
	StateDisconnected
	// StateReconnecting: waiting StateChange.Delay before dialling
	// StateChange.Addr.
	StateReconnecting
	// StateClosed: the client is finished (Close, or a disconnect that ends
	// it); Err tells why.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// StateChange reports a connection state change to Config.OnStateChange.
// StateConnected is reported only after a reconnect (the first connection is
// Dial's result): the application should then Sync, because pushes sent
// while it was disconnected are not replayed.
type StateChange struct {
	State State
	// Addr is the address concerned: the one lost, about to be dialled, or
	// connected.
	Addr string
	// Err is the cause for StateDisconnected and StateClosed: a
	// *DisconnectError when the server sent Op 6, ErrHeartbeatTimeout, an
	// I/O error, or ErrClosed after Close. For StateReconnecting it is the
	// error of the previous attempt, if any.
	Err error
	// Attempt numbers reconnect attempts from 1 (StateReconnecting, and
	// StateConnected after a reconnect).
	Attempt int
	// Delay is the wait before this attempt (StateReconnecting).
	Delay time.Duration
	// AuthReply is the new connection's AuthReply (StateConnected).
	AuthReply AuthReply
}

// Client is a connection to GoIM that reconnects if configured to. All its
// methods are safe for concurrent use.
type Client struct {
	cfg     Config
	log     *slog.Logger
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	packets chan protocol.Packet
	done    chan struct{} // closed when run has returned

	cur   atomic.Pointer[conn] // nil between connections
	seq   atomic.Uint32
	state atomic.Int32

	mu       sync.Mutex
	auth     AuthReply
	token    string
	key      string
	room     string
	accepts  []int32
	learnt   []string // addresses from Op 6 addrs, newest first
	lastAddr string
	err      error // why the client finished
}

// Dial connects to the first address that works (Config.Addr, then
// Config.Addrs), sends Auth (Op 7) and waits for AuthReply (Op 8). It returns
// *AuthError if the server refused the Auth with Op 6. ctx bounds the
// connection attempt only; the Client lives until Close (or, without
// Reconnect, until the connection ends).
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		packets: make(chan protocol.Packet, cfg.InboundBuffer),
		done:    make(chan struct{}),
		token:   cfg.Token,
		key:     cfg.Key,
		room:    cfg.Room,
		accepts: normalizeOps(cfg.Accepts),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	var errs []error
	for _, addr := range c.candidates("", nil) {
		cn, err := c.connect(ctx, addr)
		if err == nil {
			c.cur.Store(cn)
			go c.run(cn)
			return c, nil
		}
		errs = append(errs, err)
		var ae *AuthError
		if errors.As(err, &ae) || ctx.Err() != nil {
			break
		}
	}
	c.cancel()
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, errors.Join(errs...)
}

// aLongTimeAgo is a deadline in the past, to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// connect makes one connection attempt: dial, Auth, AuthReply. The returned
// connection's writer is running; its reader is not.
func (c *Client) connect(ctx context.Context, addr string) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()

	c.mu.Lock()
	req := authReq{Token: c.token, Key: c.key, RoomID: c.room, Platform: c.cfg.Platform, Accepts: c.accepts}
	c.mu.Unlock()
	nc, r, fr, err := c.dialNet(ctx, addr, req.Token)
	if err != nil {
		return nil, err
	}
	if c.cfg.TokenInQuery && fr != nil {
		req.Token = ""
	}
	cn := newConn(c, nc, addr, r, fr)

	// The context (with DialTimeout) bounds the handshake: when it ends, the
	// blocked read fails at once.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(aLongTimeAgo) })
	reply, err := cn.handshake(req)
	if !stop() && err == nil {
		err = ctx.Err() // the deadline may have been poisoned
	}
	if err != nil {
		_ = nc.Close()
		if ctxErr := ctx.Err(); ctxErr != nil && !isAuthError(err) {
			return nil, fmt.Errorf("client: connect %s: %w (%w)", addr, ctxErr, err)
		}
		return nil, fmt.Errorf("client: connect %s: %w", addr, err)
	}
	_ = nc.SetDeadline(time.Time{})

	cn.heartbeat = c.cfg.Heartbeat
	if cn.heartbeat <= 0 {
		cn.heartbeat = DefaultHeartbeat
		if reply.HeartbeatS > 0 {
			cn.heartbeat = time.Duration(reply.HeartbeatS) * time.Second
		}
	}
	c.mu.Lock()
	c.auth = reply
	if reply.Key != "" {
		c.key = reply.Key
	}
	c.lastAddr = addr
	c.mu.Unlock()
	cn.wg.Add(1)
	go cn.writeLoop()
	return cn, nil
}

func isAuthError(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae)
}

// maxAuthReplyBody bounds the AuthReply body.
const maxAuthReplyBody = 64 << 10

// handshake writes Auth and reads until AuthReply (or Op 6). Packets that
// follow AuthReply in the same batch are kept in early.
func (cn *conn) handshake(req authReq) (AuthReply, error) {
	body, err := sonic.Marshal(req)
	if err != nil {
		return AuthReply{}, fmt.Errorf("client: encode auth: %w", err)
	}
	if _, err := cn.nc.Write(appendPacket(nil, cn.isWS, protocol.OpAuth, cn.c.nextSeq(), body)); err != nil {
		return AuthReply{}, fmt.Errorf("client: write auth: %w", err)
	}
	var (
		reply  AuthReply
		authed bool
	)
	var handle func(p protocol.Packet, depth int) error
	handle = func(p protocol.Packet, depth int) error {
		if authed {
			p.Body = cn.slab.copy(p.Body)
			cn.early = append(cn.early, p)
			return nil
		}
		switch p.Op {
		case protocol.OpAuthReply:
			if len(p.Body) > maxAuthReplyBody {
				return fmt.Errorf("%w: auth reply of %d bytes", ErrProtocol, len(p.Body))
			}
			if err := sonic.Unmarshal(p.Body, &reply); err != nil {
				return fmt.Errorf("%w: auth reply: %w", ErrProtocol, err)
			}
			authed = true
			return nil
		case protocol.OpDisconnect:
			de := parseDisconnect(p.Body)
			return &AuthError{Code: de.Code, Reason: de.Reason}
		case protocol.OpRaw:
			if depth >= maxBatchDepth {
				return fmt.Errorf("%w: batches nested too deep", ErrProtocol)
			}
			return protocol.SplitBatch(p.Body, func(ip protocol.Packet) error { return handle(ip, depth+1) })
		}
		return fmt.Errorf("%w: op %d before auth reply", ErrProtocol, p.Op)
	}
	for !authed {
		p, err := cn.rd.next()
		if err != nil {
			return AuthReply{}, fmt.Errorf("client: read auth reply: %w", err)
		}
		if err := handle(p, 0); err != nil {
			return AuthReply{}, err
		}
	}
	return reply, nil
}

// run serves connections until the client finishes: it reads the current
// connection and, when it ends, reconnects if allowed.
func (c *Client) run(cn *conn) {
	defer close(c.done)
	defer close(c.packets)
	for {
		cause := c.serve(cn)
		c.cur.Store(nil)
		if c.ctx.Err() != nil {
			c.finish(ErrClosed)
			return
		}
		c.setState(StateChange{State: StateDisconnected, Addr: cn.addr, Err: cause})
		var de *DisconnectError
		errors.As(cause, &de)
		if !c.cfg.Reconnect || (de != nil && terminalCode(de.Code)) {
			c.finish(cause)
			return
		}
		if de != nil {
			c.learn(de.Addrs)
		}
		c.log.Info("goim client: connection lost, reconnecting", "addr", cn.addr, "err", cause)
		if cn = c.reconnect(cn.addr, de); cn == nil {
			return
		}
	}
}

// serve reads cn until it ends and returns why.
func (c *Client) serve(cn *conn) error {
	stop := context.AfterFunc(c.ctx, func() { cn.close(ErrClosed) })
	defer stop()
	var err error
	for _, p := range cn.early {
		if err = cn.dispatch(p, 0); err != nil {
			break
		}
	}
	cn.early = nil
	for err == nil {
		var p protocol.Packet
		if p, err = cn.rd.next(); err != nil {
			err = fmt.Errorf("client: read: %w", err)
			break
		}
		cn.recvs.Add(1)
		err = cn.dispatch(p, 0)
	}
	cn.close(err)
	cn.wg.Wait()
	return cn.err
}

// reconnect dials until a connection is authenticated (returned), the client
// is closed, or the server refuses the Auth for good (nil; the client is
// finished).
func (c *Client) reconnect(lastAddr string, de *DisconnectError) *conn {
	addrs := c.candidates(lastAddr, de)
	var lastErr error
	for attempt := 0; ; attempt++ {
		delay := c.backoff(attempt)
		if attempt == 0 && de != nil && de.ReconnectAfter > 0 {
			delay = de.ReconnectAfter
		}
		addr := addrs[attempt%len(addrs)]
		c.setState(StateChange{State: StateReconnecting, Addr: addr, Attempt: attempt + 1, Delay: delay, Err: lastErr})
		if !c.sleep(delay) {
			c.finish(ErrClosed)
			return nil
		}
		if c.cfg.RefreshToken != nil {
			tok, err := c.cfg.RefreshToken(c.ctx)
			if err != nil {
				lastErr = fmt.Errorf("client: refresh token: %w", err)
				c.log.Warn("goim client: refresh token failed", "err", err)
				continue
			}
			c.mu.Lock()
			c.token = tok
			c.mu.Unlock()
		}
		cn, err := c.connect(c.ctx, addr)
		if err == nil {
			c.cur.Store(cn)
			c.setState(StateChange{State: StateConnected, Addr: addr, Attempt: attempt + 1, AuthReply: c.AuthReply()})
			c.log.Info("goim client: reconnected", "addr", addr, "attempt", attempt+1)
			return cn
		}
		if c.ctx.Err() != nil {
			c.finish(ErrClosed)
			return nil
		}
		var ae *AuthError
		if errors.As(err, &ae) && terminalCode(ae.Code) {
			c.finish(err)
			return nil
		}
		lastErr = err
		c.log.Warn("goim client: reconnect failed", "addr", addr, "attempt", attempt+1, "err", err)
	}
}

// candidates lists the addresses to try, in order: after an Op 6 with
// addrs, those first and the node that sent it last; otherwise the last
// address first; then learnt addresses, then Config.Addr and Config.Addrs.
func (c *Client) candidates(lastAddr string, de *DisconnectError) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	add := func(a string) {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	draining := de != nil && len(de.Addrs) > 0
	if draining {
		for _, a := range de.Addrs {
			add(a)
		}
	} else {
		add(lastAddr)
	}
	for _, a := range c.learnt {
		if !draining || a != lastAddr {
			add(a)
		}
	}
	for _, a := range append([]string{c.cfg.Addr}, c.cfg.Addrs...) {
		if !draining || a != lastAddr {
			add(a)
		}
	}
	add(lastAddr)
	return out
}

// maxLearnt bounds the addresses remembered from Op 6.
const maxLearnt = 32

func (c *Client) learn(addrs []string) {
	if len(addrs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := append([]string(nil), addrs...)
	for _, a := range c.learnt {
		if !slices.Contains(l, a) {
			l = append(l, a)
		}
	}
	if len(l) > maxLearnt {
		l = l[:maxLearnt]
	}
	c.learnt = l
}

// backoff is the full-jitter exponential backoff of attempt n (from 0): a
// random wait in [0, min(MaxBackoff, MinBackoff*2^n)].
func (c *Client) backoff(n int) time.Duration {
	limit := c.cfg.MaxBackoff
	if n < 62 {
		if d := c.cfg.MinBackoff << n; d > 0 && d < limit && d>>n == c.cfg.MinBackoff {
			limit = d
		}
	}
	return rand.N(limit + 1)
}

// sleep waits d; false if the client was closed meanwhile.
func (c *Client) sleep(d time.Duration) bool {
	if d <= 0 {
		return c.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

func (c *Client) finish(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	c.setState(StateChange{State: StateClosed, Err: err})
}

func (c *Client) setState(sc StateChange) {
	c.state.Store(int32(sc.State))
	if c.cfg.OnStateChange != nil {
		c.cfg.OnStateChange(sc)
	}
}

// nextSeq allocates a request Seq: positive, never 0 (the push Seq).
func (c *Client) nextSeq() int32 {
	for {
		if s := int32(c.seq.Add(1) & 0x7fffffff); s != 0 {
			return s
		}
	}
}

// current returns the live connection.
func (c *Client) current() (*conn, error) {
	if cn := c.cur.Load(); cn != nil {
		return cn, nil
	}
	if c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	select {
	case <-c.done:
		return nil, ErrClosed
	default:
	}
	return nil, ErrNotConnected
}

var timerPool sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, ok := timerPool.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func putTimer(t *time.Timer) {
	t.Stop() // since Go 1.23 no stale tick can be received after Stop
	timerPool.Put(t)
}

// Request sends a packet with a fresh Seq and waits for the reply with the
// same Seq: op+1, or op itself when the server refuses the request (e.g.
// unknown_op), in which case the reply is returned together with a
// *CodeError. A context without deadline gets Config.RequestTimeout. The
// reply's Body is owned by the caller. Requests may be pipelined from any
// number of goroutines; replies may come in any order.
func (c *Client) Request(ctx context.Context, op int32, body []byte) (protocol.Packet, error) {
	cn, err := c.current()
	if err != nil {
		return protocol.Packet{}, err
	}
	if len(body) > c.cfg.MaxSendBody {
		return protocol.Packet{}, fmt.Errorf("%w: %d bytes (max %d)", ErrBodyTooLarge, len(body), c.cfg.MaxSendBody)
	}
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := getTimer(c.cfg.RequestTimeout)
		defer putTimer(t)
		timeout = t.C
	}
	seq := c.nextSeq()
	cl := cn.register(seq, op)
	if err := cn.enqueue(ctx, timeout, op, seq, body); err != nil {
		cn.unregister(seq, cl)
		return protocol.Packet{}, fmt.Errorf("client: request %s: %w", protocol.OpName(op), err)
	}
	select {
	case p := <-cl.ch:
		callPool.Put(cl)
		return p, replyError(op, p)
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = context.DeadlineExceeded
	case <-cn.done:
		err = cn.lostErr()
	}
	if p, ok := cn.unregister(seq, cl); ok {
		return p, replyError(op, p)
	}
	return protocol.Packet{}, fmt.Errorf("client: request %s seq %d: %w", protocol.OpName(op), seq, err)
}

// replyError returns the *CodeError of a reply that carries the request's
// own op (the server's refusal), else nil.
func replyError(op int32, p protocol.Packet) error {
	if p.Op != op {
		return nil
	}
	var st replyStatus
	if err := sonic.Unmarshal(p.Body, &st); err == nil {
		if err := st.err(); err != nil {
			return err
		}
	}
	return &CodeError{Code: protocol.CodeUnknownOp, Message: "the server answered with the request's op"}
}

// Send queues a packet with Seq 0 and does not wait for any reply (it
// blocks only while the write buffer is full, until ctx ends). A reply the
// server might send anyway arrives on Packets.
func (c *Client) Send(ctx context.Context, op int32, body []byte) error {
	cn, err := c.current()
	if err != nil {
		return err
	}
	if len(body) > c.cfg.MaxSendBody {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrBodyTooLarge, len(body), c.cfg.MaxSendBody)
	}
	if err := cn.enqueue(ctx, nil, op, 0, body); err != nil {
		return fmt.Errorf("client: send %s: %w", protocol.OpName(op), err)
	}
	return nil
}

// JoinRoom moves the connection to room (Op 12), e.g. "live://1000"; an
// empty room leaves the current one. It returns once the server echoed Op 13:
// room pushes sent after that reach this client. Reconnects rejoin the room.
func (c *Client) JoinRoom(ctx context.Context, room string) error {
	if _, err := c.Request(ctx, protocol.OpChangeRoom, []byte(room)); err != nil {
		return err
	}
	c.mu.Lock()
	c.room = room
	c.mu.Unlock()
	return nil
}

// Sub adds business ops to the connection's accepts (Op 14, waits for Op
// 15). Reconnects resubscribe.
func (c *Client) Sub(ctx context.Context, ops ...int32) error {
	if len(ops) == 0 {
		return nil
	}
	if _, err := c.Request(ctx, protocol.OpSub, opsBody(ops)); err != nil {
		return err
	}
	c.mu.Lock()
	c.accepts = normalizeOps(append(c.accepts, ops...))
	c.mu.Unlock()
	return nil
}

// Unsub removes business ops from the connection's accepts (Op 16, waits
// for Op 17).
func (c *Client) Unsub(ctx context.Context, ops ...int32) error {
	if len(ops) == 0 {
		return nil
	}
	if _, err := c.Request(ctx, protocol.OpUnsub, opsBody(ops)); err != nil {
		return err
	}
	c.mu.Lock()
	c.accepts = slices.DeleteFunc(c.accepts, func(op int32) bool { return slices.Contains(ops, op) })
	c.mu.Unlock()
	return nil
}

func opsBody(ops []int32) []byte {
	b := make([]byte, 0, 6*len(ops))
	for i, op := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(op), 10)
	}
	return b
}

func normalizeOps(ops []int32) []int32 {
	out := slices.Clone(ops)
	slices.Sort(out)
	return slices.Compact(out)
}

// Heartbeat sends a heartbeat (Op 2) now and returns the online count of the
// connection's room from the reply (Op 3). Heartbeats are also sent in the
// background; calling this is never required.
func (c *Client) Heartbeat(ctx context.Context) (int32, error) {
	p, err := c.Request(ctx, protocol.OpHeartbeat, nil)
	if err != nil {
		return 0, err
	}
	if len(p.Body) < 4 {
		return 0, nil
	}
	return int32(binary.BigEndian.Uint32(p.Body)), nil
}

// Packets returns the channel of server pushes: Op 22 events, business ops
// (>= 1000), and any other packet that is not a reply to a Request (Op 9
// batches arrive split into their inner packets; Op 6 and heartbeat replies
// are handled by the client and never appear). Each Body is owned by the
// receiver (it may share a backing array of a few KiB with other bodies, so
// copy small bodies you keep for long). The channel is closed when the
// client finishes; it is the same channel across reconnects. If the
// application stops reading, the client stops reading the socket
// (backpressure) and the server eventually cuts the connection as
// slow_consumer.
func (c *Client) Packets() <-chan protocol.Packet { return c.packets }

// AuthReply returns the AuthReply of the current (or last) connection.
func (c *Client) AuthReply() AuthReply {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.auth
}

// Key returns the device key used for (re)connections: Config.Key, or the
// one the server assigned.
func (c *Client) Key() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.key
}

// Room returns the room joined at auth or by the last JoinRoom.
func (c *Client) Room() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.room
}

// Accepts returns the business ops subscribed to, sorted.
func (c *Client) Accepts() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.accepts)
}

// Addr returns the address of the current (or last) connection.
func (c *Client) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastAddr
}

// State returns the current connection state.
func (c *Client) State() State { return State(c.state.Load()) }

// Done is closed when the client is finished: after Close, or when the
// connection ended and no reconnect follows (Config.Reconnect off, Op 6
// unauthorized/replaced/kicked, or a reconnect refused by Auth).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while the client runs, and why it finished once Done is
// closed: ErrClosed after Close, a *DisconnectError (errors.As) when the
// server disconnected it for good, an *AuthError when a reconnect was
// refused, or the error that ended the connection.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection, stops reconnecting and waits for the
// client's goroutines to end. Pending requests fail with ErrClosed. It is
// safe to call more than once, and returns nil.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return nil
}

package client

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"
	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

// conn is one network connection of a Client: the reader side is driven by
// the Client's run goroutine, the writer side by writeLoop.
type conn struct {
	c         *Client
	nc        net.Conn
	addr      string
	isWS      bool
	rd        *packetReader
	heartbeat time.Duration

	wmu     sync.Mutex
	wbuf    []byte        // encoded packets waiting for the writer
	wspace  chan struct{} // closed when the writer took wbuf; nil if nobody waits
	wclosed bool
	wsig    chan struct{} // cap 1: wbuf is not empty

	pmu     sync.Mutex
	pending map[int32]*call

	recvs   atomic.Uint64 // packets read: liveness for the heartbeat check
	blocked atomic.Bool   // the reader waits for the application to take a packet

	closeOnce sync.Once
	err       error         // why the connection ended; set before done is closed
	done      chan struct{} // closed when the connection ends
	wg        sync.WaitGroup

	slab  slab              // reader goroutine only
	early []protocol.Packet // packets that followed AuthReply in the same batch
}

// call is one request waiting for its reply.
type call struct {
	op int32
	ch chan protocol.Packet // cap 1; the reader sends under pmu
}

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan protocol.Packet, 1)} }}

func newConn(c *Client, nc net.Conn, addr string, r io.Reader, fr *wsFrameReader) *conn {
	cn := &conn{
		c:       c,
		nc:      nc,
		addr:    addr,
		isWS:    fr != nil,
		rd:      newPacketReader(r, c.cfg.ReadBufferSize, c.cfg.MaxReceiveBody),
		wsig:    make(chan struct{}, 1),
		pending: make(map[int32]*call),
		done:    make(chan struct{}),
	}
	if fr != nil {
		fr.control = cn.writeControl
	}
	return cn
}

// close ends the connection with cause err; only the first cause is kept.
func (cn *conn) close(err error) {
	cn.closeOnce.Do(func() {
		cn.err = err
		close(cn.done)
		_ = cn.nc.Close()
		cn.wmu.Lock()
		cn.wclosed = true
		cn.wbuf = nil
		space := cn.wspace
		cn.wspace = nil
		cn.wmu.Unlock()
		if space != nil {
			close(space)
		}
	})
}

// lostErr is the error of operations cut by the end of the connection. Call
// it only after done is closed or wclosed was seen under wmu.
func (cn *conn) lostErr() error {
	if cn.err == ErrClosed {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrConnLost, cn.err)
}

// enqueue appends one packet to the write buffer, waiting while the buffer
// is over MaxPendingWrite.
func (cn *conn) enqueue(ctx context.Context, timeout <-chan time.Time, op, seq int32, body []byte) error {
	for {
		cn.wmu.Lock()
		if cn.wclosed {
			cn.wmu.Unlock()
			return cn.lostErr()
		}
		if len(cn.wbuf) == 0 || len(cn.wbuf)+len(body) <= cn.c.cfg.MaxPendingWrite {
			cn.wbuf = appendPacket(cn.wbuf, cn.isWS, op, seq, body)
			cn.wmu.Unlock()
			select {
			case cn.wsig <- struct{}{}:
			default:
			}
			return nil
		}
		if cn.wspace == nil {
			cn.wspace = make(chan struct{})
		}
		space := cn.wspace
		cn.wmu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return context.DeadlineExceeded
		case <-cn.done:
			return cn.lostErr()
		}
	}
}

// writeControl queues a WebSocket control frame (pong, close echo).
func (cn *conn) writeControl(op ws.OpCode, payload []byte) {
	cn.wmu.Lock()
	if !cn.wclosed {
		cn.wbuf = appendWSFrame(cn.wbuf, op, len(payload), func(b []byte) []byte { return append(b, payload...) })
	}
	cn.wmu.Unlock()
	select {
	case cn.wsig <- struct{}{}:
	default:
	}
}

// writeLoop flushes the write buffer in one write whenever it is not empty,
// and sends the periodic heartbeat. It closes the connection when nothing
// arrived for max(heartbeat, RequestTimeout) after a heartbeat was sent
// (unless the reader is blocked on the application).
func (cn *conn) writeLoop() {
	defer cn.wg.Done()
	var tick <-chan time.Time
	if cn.heartbeat > 0 {
		t := time.NewTicker(cn.heartbeat)
		defer t.Stop()
		tick = t.C
	}
	var (
		spare     []byte
		hbPending bool      // a heartbeat was sent and nothing arrived since
		hbMark    uint64    // recvs when that heartbeat was sent
		hbSentAt  time.Time // when it was sent
	)
	deadAfter := max(cn.heartbeat, cn.c.cfg.RequestTimeout)
	for {
		select {
		case <-cn.done:
			return
		case <-cn.wsig:
		case now := <-tick:
			recvs := cn.recvs.Load()
			if hbPending && recvs == hbMark {
				if now.Sub(hbSentAt) >= deadAfter && !cn.blocked.Load() {
					cn.close(ErrHeartbeatTimeout)
					return
				}
			} else {
				hbPending, hbMark, hbSentAt = true, recvs, now
			}
			cn.wmu.Lock()
			if !cn.wclosed {
				cn.wbuf = appendPacket(cn.wbuf, cn.isWS, protocol.OpHeartbeat, 0, nil)
			}
			cn.wmu.Unlock()
		}
		cn.wmu.Lock()
		buf := cn.wbuf
		cn.wbuf = spare[:0]
		space := cn.wspace
		cn.wspace = nil
		cn.wmu.Unlock()
		if space != nil {
			close(space)
		}
		if len(buf) > 0 {
			_ = cn.nc.SetWriteDeadline(time.Now().Add(cn.c.cfg.WriteTimeout))
			if _, err := cn.nc.Write(buf); err != nil {
				cn.close(fmt.Errorf("client: write: %w", err))
				return
			}
		}
		if cap(buf) > 4*shrinkAbove {
			buf = nil
		}
		spare = buf
	}
}

// register adds a pending call for seq.
func (cn *conn) register(seq, op int32) *call {
	cl := callPool.Get().(*call)
	cl.op = op
	cn.pmu.Lock()
	cn.pending[seq] = cl
	cn.pmu.Unlock()
	return cl
}

// unregister removes the call of seq. If the reader already delivered the
// reply, it returns it.
func (cn *conn) unregister(seq int32, cl *call) (protocol.Packet, bool) {
	cn.pmu.Lock()
	if cn.pending[seq] == cl {
		delete(cn.pending, seq)
		cn.pmu.Unlock()
		callPool.Put(cl)
		return protocol.Packet{}, false
	}
	cn.pmu.Unlock()
	// The reader took the call and sent the reply under pmu: it is there.
	p := <-cl.ch
	callPool.Put(cl)
	return p, true
}

// reply hands p to the request waiting for its Seq, if any.
func (cn *conn) reply(p protocol.Packet) bool {
	cn.pmu.Lock()
	cl := cn.pending[p.Seq]
	if cl == nil || (p.Op != cl.op+1 && p.Op != cl.op) {
		cn.pmu.Unlock()
		return false
	}
	delete(cn.pending, p.Seq)
	p.Body = cn.slab.copy(p.Body)
	cl.ch <- p
	cn.pmu.Unlock()
	return true
}

// maxBatchDepth bounds Op 9 packets nested in Op 9 packets.
const maxBatchDepth = 2

// dispatch routes one packet from the server: batches are split, Op 6 ends
// the connection (the returned error is the *DisconnectError), replies go
// to their request, everything else to the Packets channel.
func (cn *conn) dispatch(p protocol.Packet, depth int) error {
	switch p.Op {
	case protocol.OpRaw:
		if depth >= maxBatchDepth {
			return fmt.Errorf("%w: batches nested too deep", ErrProtocol)
		}
		if err := protocol.SplitBatch(p.Body, func(ip protocol.Packet) error { return cn.dispatch(ip, depth+1) }); err != nil {
			return fmt.Errorf("client: batch: %w", err)
		}
		return nil
	case protocol.OpDisconnect:
		return parseDisconnect(p.Body)
	case protocol.OpHeartbeatReply:
		if p.Seq == 0 {
			return nil // the background heartbeat
		}
	}
	if p.Seq != 0 {
		if cn.reply(p) {
			return nil
		}
		if p.Op < protocol.OpBusinessMin && p.Op != protocol.OpEvent {
			// A reply whose request gave up (timeout, cancel).
			cn.c.log.Debug("goim client: dropping late reply", "op", p.Op, "seq", p.Seq)
			return nil
		}
	}
	return cn.deliver(p)
}

// deliver hands a push to the application, blocking (backpressure) while
// the Packets channel is full.
func (cn *conn) deliver(p protocol.Packet) error {
	p.Body = cn.slab.copy(p.Body)
	select {
	case cn.c.packets <- p:
		return nil
	default:
	}
	cn.blocked.Store(true)
	defer cn.blocked.Store(false)
	select {
	case cn.c.packets <- p:
		return nil
	case <-cn.done:
		return cn.err
	case <-cn.c.ctx.Done():
		return ErrClosed
	}
}

// disconnectBody is the JSON body of Op 6.
type disconnectBody struct {
	Code             string   `json:"code"`
	Reason           string   `json:"reason"`
	ReconnectAfterMs int64    `json:"reconnect_after_ms"`
	Addrs            []string `json:"addrs"`
}

// Limits on the Op 6 body, which comes from the network.
const (
	maxDisconnectAddrs = 32
	maxAddrLen         = 256
	maxReconnectAfter  = 10 * time.Minute
)

func parseDisconnect(body []byte) *DisconnectError {
	var d disconnectBody
	if err := sonic.Unmarshal(body, &d); err != nil {
		return &DisconnectError{Reason: "unreadable disconnect body"}
	}
	de := &DisconnectError{Code: d.Code, Reason: d.Reason}
	if d.ReconnectAfterMs > 0 {
		de.ReconnectAfter = maxReconnectAfter
		if d.ReconnectAfterMs < int64(maxReconnectAfter/time.Millisecond) {
			de.ReconnectAfter = time.Duration(d.ReconnectAfterMs) * time.Millisecond
		}
	}
	for _, a := range d.Addrs {
		if len(de.Addrs) == maxDisconnectAddrs {
			break
		}
		if a != "" && len(a) <= maxAddrLen {
			de.Addrs = append(de.Addrs, a)
		}
	}
	return de
}

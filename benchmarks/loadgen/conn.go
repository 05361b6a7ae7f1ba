package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bytedance/sonic"
	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

// Read buffer sizes of one client connection. An idle connection only ever
// sees heartbeat replies, so it starts small; a big batch grows the buffer
// and it shrinks back once drained.
const (
	readBufInit   = 512
	readBufBusy   = 16 << 10 // largest buffer grown for a stream of small packets
	readBufShrink = 64 << 10
	// maxPacket bounds one server packet or WebSocket message (a big Op 9
	// batch); larger is treated as a broken stream.
	maxPacket = 16 << 20
	// writeTimeout bounds one heartbeat write.
	writeTimeout = 5 * time.Second
)

// errRefused is wrapped by handshake errors where the server answered Op 6.
var errRefused = errors.New("auth refused")

// client is one lean benchmark connection. Its reader goroutine owns the
// read state; writes (heartbeats, WebSocket pongs) take wmu.
type client struct {
	nc   net.Conn
	ws   bool
	idx  int
	wmu  sync.Mutex
	done atomic.Bool // set when the worker closes it on purpose
	dead atomic.Bool // set when its reader has ended
	// lastHB is when the last heartbeat was written (unix ns).
	lastHB atomic.Int64

	// read state, owned by the reader goroutine
	buf        []byte
	big        *[]byte // readRaw: the pooled buffer buf is, while borrowed
	own        []byte  // readRaw: the connection's own buffer meanwhile
	start, end int
	now        int64  // receive time of the last read, unix nanos
	lastRead   int    // bytes returned by the last read
	grow       bool   // the last read filled the buffer
	wsMsg      []byte // WebSocket continuation frames being assembled
	seqs       seqWindow
	record     bool  // record push latencies of this connection
	hist       *Hist // where (a shard of the worker's latency histogram)
	pending    int64 // deliveries of the current read not yet published

	delivered  atomic.Int64
	reordered  atomic.Int64
	duplicates atomic.Int64
	firstRecv  atomic.Int64 // receive time of the first delivery since reset
	lastRecv   atomic.Int64 // receive time of the newest delivery
}

// authReq is the Op 7 body (PROTOCOL.md section 3).
type authReq struct {
	Token    string  `json:"token"`
	Key      string  `json:"key,omitempty"`
	RoomID   string  `json:"room_id,omitempty"`
	Platform string  `json:"platform"`
	Accepts  []int32 `json:"accepts,omitempty"`
}

// authReply is the part of the Op 8 body the benchmark uses.
type authReply struct {
	UserID     int64  `json:"user_id"`
	Key        string `json:"key"`
	HeartbeatS int    `json:"heartbeat_s"`
}

// disconnect is the Op 6 body.
type disconnect struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// SplitAddrs splits a comma-separated address list ("h:p,h:p"), dropping
// empty entries and spaces. ConnectSpec.Addr may hold such a list: the
// connections are spread over it round robin.
func SplitAddrs(list string) []string {
	var out []string
	for a := range strings.SplitSeq(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// JoinAddrs is the inverse of SplitAddrs.
func JoinAddrs(addrs []string) string { return strings.Join(addrs, ",") }

// rotateAddrs returns the list with its first n%len entries moved to the
// end: a worker whose part of the users starts at global index n then
// continues the global round robin.
func rotateAddrs(list string, n int) string {
	a := SplitAddrs(list)
	if len(a) < 2 {
		return list
	}
	n %= len(a)
	return JoinAddrs(append(a[n:], a[:n]...))
}

// dialClient is dialClientAddr to spec.Addr.
func dialClient(ctx context.Context, spec *ConnectSpec, token, key string) (c *client, heartbeat time.Duration, err error) {
	return dialClientAddr(ctx, spec, spec.Addr, token, key)
}

// dialClientAddr connects to addr, authenticates with token and waits for
// AuthReply. On success the connection has no deadline and the returned
// heartbeat is the server's announced interval (0 if it announced none).
func dialClientAddr(ctx context.Context, spec *ConnectSpec, addr, token, key string) (c *client, heartbeat time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, spec.HandshakeTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, 0, fmt.Errorf("dial: %w", err)
	}
	defer func() {
		if err != nil {
			nc.Close()
		}
	}()
	deadline, _ := ctx.Deadline()
	if err := nc.SetDeadline(deadline); err != nil {
		return nil, 0, fmt.Errorf("deadline: %w", err)
	}
	c = &client{nc: nc, ws: spec.Transport == TransportWS}
	if c.ws {
		u := &url.URL{Scheme: "ws", Host: addr, Path: spec.WSPath}
		br, _, err := ws.Dialer{}.Upgrade(nc, u)
		if err != nil {
			return nil, 0, fmt.Errorf("ws upgrade: %w", err)
		}
		if br != nil { // the server wrote frames right after the handshake
			n := br.Buffered()
			c.buf = make([]byte, max(readBufInit, n*2))
			c.end, _ = io.ReadFull(br, c.buf[:n])
			ws.PutReader(br)
		}
	}
	body, err := sonic.Marshal(authReq{Token: token, Key: key, RoomID: spec.Room, Platform: spec.Platform, Accepts: spec.Accepts})
	if err != nil {
		return nil, 0, fmt.Errorf("auth body: %w", err)
	}
	if err := c.writePacket(protocol.Encode(protocol.Packet{Ver: protocol.Version, Op: protocol.OpAuth, Seq: 1, Body: body})); err != nil {
		return nil, 0, fmt.Errorf("auth write: %w", err)
	}
	for {
		p, err := c.next()
		if err != nil {
			return nil, 0, fmt.Errorf("auth read: %w", err)
		}
		switch p.Op {
		case protocol.OpAuthReply:
			var r authReply
			if err := sonic.Unmarshal(p.Body, &r); err != nil {
				return nil, 0, fmt.Errorf("auth reply: %w", err)
			}
			if err := nc.SetDeadline(time.Time{}); err != nil {
				return nil, 0, fmt.Errorf("deadline: %w", err)
			}
			return c, time.Duration(r.HeartbeatS) * time.Second, nil
		case protocol.OpDisconnect:
			var d disconnect
			_ = sonic.Unmarshal(p.Body, &d)
			return nil, 0, fmt.Errorf("%w: %s", errRefused, d.Code)
		}
		// Anything else before AuthReply is ignored.
	}
}

// writePacket writes one encoded packet (as one binary frame on WebSocket).
func (c *client) writePacket(pkt []byte) error {
	if c.ws {
		frame, err := ws.CompileFrame(ws.MaskFrame(ws.NewBinaryFrame(pkt)))
		if err != nil {
			return err
		}
		pkt = frame
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(pkt)
	return err
}

// writeRaw writes pre-built bytes (a packet on TCP, a masked frame on
// WebSocket) with a write deadline.
func (c *client) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.nc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	_, err := c.nc.Write(b)
	return err
}

// next returns the next server packet. Its Body aliases the read buffer
// and is valid until the following call. c.now is the receive time of the
// bytes it came from.
func (c *client) next() (protocol.Packet, error) {
	if c.ws {
		return c.nextWS()
	}
	for {
		need := protocol.HeaderLen
		if c.end > c.start {
			p, n, err := protocol.Decode(c.buf[c.start:c.end], maxPacket)
			if err == nil {
				c.start += n
				return p, nil
			}
			if !errors.Is(err, protocol.ErrShort) {
				return protocol.Packet{}, err
			}
			if c.end-c.start >= protocol.HeaderLen {
				h, _ := protocol.ParseHeader(c.buf[c.start:c.end], maxPacket)
				need = int(h.PackLen)
			}
		}
		if err := c.fill(need); err != nil {
			return protocol.Packet{}, err
		}
	}
}

// nextWS returns the next packet from the WebSocket stream: the body of a
// binary (or text) message holds one packet, possibly an Op 9 batch, which
// the caller splits.
func (c *client) nextWS() (protocol.Packet, error) {
	for {
		payload, err := c.nextWSMessage()
		if err != nil {
			return protocol.Packet{}, err
		}
		p, n, err := protocol.Decode(payload, maxPacket)
		if err != nil {
			return protocol.Packet{}, fmt.Errorf("packet in ws message: %w", err)
		}
		if n != len(payload) {
			return protocol.Packet{}, fmt.Errorf("ws message holds %d bytes after its packet", len(payload)-n)
		}
		return p, nil
	}
}

// nextWSMessage returns the payload of the next data message, answering
// pings and assembling continuation frames. Server frames are not masked.
func (c *client) nextWSMessage() ([]byte, error) {
	for {
		hdrLen, payloadLen, fin, op, err := c.wsHeader()
		if err != nil {
			return nil, err
		}
		total := hdrLen + payloadLen
		if total > maxPacket {
			return nil, fmt.Errorf("ws frame of %d bytes", payloadLen)
		}
		for c.end-c.start < total {
			if err := c.fill(total); err != nil {
				return nil, err
			}
		}
		payload := c.buf[c.start+hdrLen : c.start+total]
		c.start += total
		switch {
		case op == ws.OpClose:
			return nil, io.EOF
		case op == ws.OpPing:
			pong, _ := ws.CompileFrame(ws.MaskFrame(ws.NewPongFrame(append([]byte(nil), payload...))))
			if err := c.writeRaw(pong); err != nil {
				return nil, err
			}
			continue
		case op == ws.OpPong:
			continue
		case op == ws.OpContinuation || !fin:
			if len(c.wsMsg)+len(payload) > maxPacket {
				return nil, errors.New("ws message too large")
			}
			c.wsMsg = append(c.wsMsg, payload...)
			if !fin {
				continue
			}
			msg := c.wsMsg
			c.wsMsg = nil
			return msg, nil
		default:
			return payload, nil
		}
	}
}

// wsHeader parses the frame header at c.start, reading more as needed.
func (c *client) wsHeader() (hdrLen, payloadLen int, fin bool, op ws.OpCode, err error) {
	for {
		b := c.buf[c.start:c.end]
		if len(b) >= 2 {
			fin = b[0]&0x80 != 0
			op = ws.OpCode(b[0] & 0x0f)
			masked := b[1]&0x80 != 0
			l := int(b[1] & 0x7f)
			hdrLen = 2
			switch l {
			case 126:
				hdrLen += 2
			case 127:
				hdrLen += 8
			}
			if masked {
				hdrLen += 4
			}
			if len(b) >= hdrLen {
				switch l {
				case 126:
					l = int(binary.BigEndian.Uint16(b[2:4]))
				case 127:
					n := binary.BigEndian.Uint64(b[2:10])
					if n > maxPacket {
						return 0, 0, false, 0, fmt.Errorf("ws frame of %d bytes", n)
					}
					l = int(n)
				}
				if masked { // servers do not mask; unmask anyway
					for c.end-c.start < hdrLen+l {
						if err := c.fill(hdrLen + l); err != nil {
							return 0, 0, false, 0, err
						}
					}
					f := c.buf[c.start : c.start+hdrLen+l]
					ws.Cipher(f[hdrLen:], [4]byte(f[hdrLen-4:hdrLen]), 0)
				}
				return hdrLen, l, fin, op, nil
			}
		}
		if err := c.fill(max(hdrLen, 2)); err != nil {
			return 0, 0, false, 0, err
		}
	}
}

// fill makes room for need bytes from c.start and reads once. The buffer
// doubles (up to readBufBusy) after a read that filled it, so that a
// connection receiving a stream of pushes reads many per syscall, and goes
// back to readBufInit once it is drained after a small read.
func (c *client) fill(need int) error {
	c.makeRoom(need)
	space := len(c.buf) - c.end
	n, err := c.nc.Read(c.buf[c.end:])
	c.got(n, space)
	if n > 0 {
		return nil
	}
	if err == nil {
		return nil
	}
	return err
}

// makeRoom resizes or compacts the buffer so that need bytes from c.start
// fit and there is free space after c.end (see fill).
func (c *client) makeRoom(need int) {
	if c.start == c.end {
		c.start, c.end = 0, 0
		switch {
		case c.buf == nil:
			c.buf = make([]byte, max(readBufInit, need))
		case len(c.buf) > readBufShrink && need <= readBufInit:
			c.buf = make([]byte, readBufInit) // a big packet passed
		case c.grow && len(c.buf) < readBufBusy:
			c.buf = make([]byte, max(2*len(c.buf), need))
		case !c.grow && len(c.buf) > readBufInit && c.lastRead < len(c.buf)/8 && need <= readBufInit:
			c.buf = make([]byte, readBufInit) // the burst is over
		}
	}
	if need > len(c.buf)-c.start || c.end == len(c.buf) {
		if need > len(c.buf) || c.end-c.start == len(c.buf) {
			nb := make([]byte, max(need, 2*len(c.buf)))
			c.end = copy(nb, c.buf[c.start:c.end])
			c.buf = nb
		} else {
			c.end = copy(c.buf, c.buf[c.start:c.end])
		}
		c.start = 0
	}
}

// got records a read of n bytes into the space free after c.end.
func (c *client) got(n, space int) {
	c.now = time.Now().UnixNano()
	c.end += n
	c.lastRead = n
	c.grow = n == space
}

// readBufPooled is the size of the read buffers readRaw borrows.
const readBufPooled = 64 << 10

var readBufPool = sync.Pool{New: func() any {
	b := make([]byte, readBufPooled)
	return &b
}}

// borrow makes c read into a pooled buffer (moving the unread bytes there)
// with room for need bytes from c.start and free space after c.end. A
// packet larger than the pooled buffers gets a buffer of its own.
func (c *client) borrow(need int) {
	if c.big == nil && need <= readBufPooled {
		c.big = readBufPool.Get().(*[]byte)
		c.own = c.buf
		c.end = copy(*c.big, c.buf[c.start:c.end])
		c.start = 0
		c.buf = *c.big
	}
	switch {
	case c.start == c.end:
		c.start, c.end = 0, 0
		if len(c.buf) < need {
			c.buf = make([]byte, need)
		}
	case need > len(c.buf)-c.start || len(c.buf)-c.end < 2<<10:
		if need > len(c.buf) {
			nb := make([]byte, need)
			c.end = copy(nb, c.buf[c.start:c.end])
			c.buf = nb
		} else {
			c.end = copy(c.buf, c.buf[c.start:c.end])
		}
		c.start = 0
	}
}

// giveBack returns the pooled buffer, keeping the unread bytes (a partial
// packet, usually none) in the connection's own buffer.
func (c *client) giveBack() {
	if c.big == nil {
		c.own = c.buf
		if len(c.buf) <= readBufInit {
			return
		}
	}
	rest := c.buf[c.start:c.end]
	if cap(c.own) < len(rest) || c.own == nil || cap(c.own) > max(readBufInit, len(rest)) {
		c.own = make([]byte, max(readBufInit, len(rest))) // too small, or grown for a big packet
	}
	c.buf = c.own[:cap(c.own)]
	c.start, c.end = 0, copy(c.buf, rest)
	if c.big != nil {
		readBufPool.Put(c.big)
	}
	c.big, c.own = nil, nil
}

// rawConn returns the socket of a TCP connection for readRaw; nil for
// WebSocket (its frames go through next) or when c.nc is not a socket.
func (c *client) rawConn() syscall.RawConn {
	if c.ws {
		return nil
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// buffered reports whether unread bytes are waiting in the read buffer.
func (c *client) buffered() bool { return c.end > c.start }

// Payload layout of a benchmark push: 8-byte send time (unix nanos, big
// endian), 8-byte sequence number, then padding.
const PayloadMin = 16

// PutPayload writes the send time and sequence number into the first
// PayloadMin bytes of b.
func PutPayload(b []byte, sentUnixNano, seq int64) {
	binary.BigEndian.PutUint64(b[0:8], uint64(sentUnixNano))
	binary.BigEndian.PutUint64(b[8:16], uint64(seq))
}

// ParsePayload reads what PutPayload wrote; ok is false for a body too short.
func ParsePayload(b []byte) (sentUnixNano, seq int64, ok bool) {
	if len(b) < PayloadMin {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(b[0:8])), int64(binary.BigEndian.Uint64(b[8:16])), true
}

// seqWindowBits is how far back (in sequence numbers) a connection can tell
// a duplicate from a late delivery.
const seqWindowBits = 1024

// seqWindow remembers which of the last seqWindowBits sequence numbers a
// connection received.
type seqWindow struct {
	high int64 // highest sequence number seen; 0: none yet
	bits [seqWindowBits / 64]uint64
}

// Seq classifications.
const (
	seqInOrder = iota
	seqReordered
	seqDuplicate
	seqTooOld // below the window: neither checked nor recorded
)

// add records seq and classifies it.
func (w *seqWindow) add(seq int64) int {
	bit := func(s int64) (int, uint64) {
		i := uint64(s) % seqWindowBits
		return int(i / 64), 1 << (i % 64)
	}
	switch {
	case seq > w.high:
		if seq-w.high >= seqWindowBits || w.high == 0 {
			clear(w.bits[:])
		} else {
			for s := w.high + 1; s < seq; s++ {
				i, m := bit(s)
				w.bits[i] &^= m
			}
		}
		i, m := bit(seq)
		w.bits[i] |= m
		w.high = seq
		return seqInOrder
	case w.high-seq >= seqWindowBits:
		return seqTooOld
	default:
		i, m := bit(seq)
		if w.bits[i]&m != 0 {
			return seqDuplicate
		}
		w.bits[i] |= m
		return seqReordered
	}
}

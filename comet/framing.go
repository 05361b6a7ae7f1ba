package comet

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

// Transports. A connection's transport only changes how packets are framed
// on the wire; the state machine is the same.
const (
	trTCP uint8 = iota
	trWS

	transportTCP = "tcp"
	transportWS  = "ws"
)

func transportName(tr uint8) string {
	if tr == trWS {
		return transportWS
	}
	return transportTCP
}

// streamReader is the part of netpoll.Reader the framing code uses; a
// *netpoll.LinkBuffer (fuzz tests) satisfies it too. On a connection, Peek
// and Next wait for the bytes; on a LinkBuffer they fail when short.
type streamReader interface {
	Len() int
	Peek(n int) ([]byte, error)
	Next(n int) ([]byte, error)
	Skip(n int) error
}

// blocker is told before a read that may wait for more bytes, so that the
// reader can first hand its queued replies to the writer.
type blocker interface{ beforeBlock() }

type noBlock struct{}

func (noBlock) beforeBlock() {}

// errUnreadable means the stream cannot be framed any more (PackLen < 16,
// HeaderLen != 16, a WebSocket protocol violation): close at once.
var errUnreadable = errors.New("comet: unreadable stream")

// closeReason is an error that closes the connection after Op 6 {code, reason}.
type closeReason struct {
	code   string
	reason string
}

func (e *closeReason) Error() string { return "comet: close " + e.code + ": " + e.reason }

func closeErr(code, reason string) error { return &closeReason{code: code, reason: reason} }

// need peeks n bytes, telling bl first when they are not all there yet.
func need(r streamReader, bl blocker, n int) ([]byte, error) {
	if r.Len() < n {
		bl.beforeBlock()
	}
	return r.Peek(n)
}

// readPacket reads one packet off a TCP stream. The body is limited to
// maxBody; maxPack > 0 further limits the whole packet (pre-auth budget).
// The returned packet's Body aliases the reader's buffer until Release; n is
// the number of bytes consumed.
func readPacket(r streamReader, bl blocker, maxBody, maxPack int) (p protocol.Packet, n int, err error) {
	hdr, err := need(r, bl, protocol.HeaderLen)
	if err != nil {
		return p, 0, err
	}
	h, err := protocol.ParseHeader(hdr, maxBody)
	switch {
	case errors.Is(err, protocol.ErrTooLarge):
		return p, 0, closeErr(protocol.CodePacketTooLarge, "body of "+strconv.Itoa(h.BodyLen())+" bytes exceeds "+strconv.Itoa(maxBody))
	case err != nil:
		return p, 0, errUnreadable
	}
	n = int(h.PackLen)
	if maxPack > 0 && n > maxPack {
		return p, 0, closeErr(protocol.CodePacketTooLarge, "packet exceeds the pre-auth limit")
	}
	buf, err := nextN(r, bl, n)
	if err != nil {
		return p, 0, err
	}
	return protocol.Packet{Ver: h.Ver, Op: h.Op, Seq: h.Seq, Body: buf[protocol.HeaderLen:n:n]}, n, nil
}

func nextN(r streamReader, bl blocker, n int) ([]byte, error) {
	if r.Len() < n {
		bl.beforeBlock()
	}
	return r.Next(n)
}

// WebSocket opcodes (RFC 6455).
const (
	wsOpCont   = byte(ws.OpContinuation)
	wsOpText   = byte(ws.OpText)
	wsOpBinary = byte(ws.OpBinary)
	wsOpClose  = byte(ws.OpClose)
	wsOpPing   = byte(ws.OpPing)
	wsOpPong   = byte(ws.OpPong)
)

// wsFrame is one client frame, payload unmasked in place (it aliases the
// reader's buffer until Release).
type wsFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// readWSFrame reads one client frame. Data frame payloads are limited to
// maxPayload (packet_too_large); control frames to 125 bytes. Unmasked
// frames, reserved bits, unknown opcodes and fragmented control frames make
// the stream unreadable. n is the number of bytes consumed.
func readWSFrame(r streamReader, bl blocker, maxPayload int) (f wsFrame, n int, err error) {
	b, err := need(r, bl, 2)
	if err != nil {
		return f, 0, err
	}
	f.fin = b[0]&0x80 != 0
	f.op = b[0] & 0x0f
	if b[0]&0x70 != 0 || b[1]&0x80 == 0 { // reserved bits (no extension is negotiated); client frames must be masked
		return f, 0, errUnreadable
	}
	control := f.op&0x08 != 0
	switch f.op {
	case wsOpCont, wsOpText, wsOpBinary, wsOpClose, wsOpPing, wsOpPong:
	default:
		return f, 0, errUnreadable
	}
	hlen := 2 + 4
	switch b[1] & 0x7f {
	case 126:
		hlen += 2
	case 127:
		hlen += 8
	}
	if b, err = need(r, bl, hlen); err != nil {
		return f, 0, err
	}
	var length uint64
	switch l := b[1] & 0x7f; l {
	case 126:
		length = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		length = binary.BigEndian.Uint64(b[2:10])
	default:
		length = uint64(l)
	}
	if control && (!f.fin || length > ws.MaxControlFramePayloadSize) {
		return f, 0, errUnreadable
	}
	if length > uint64(maxPayload) {
		return f, 0, closeErr(protocol.CodePacketTooLarge, "frame exceeds the body limit")
	}
	var mask [4]byte
	copy(mask[:], b[hlen-4:hlen])
	n = hlen + int(length)
	buf, err := nextN(r, bl, n)
	if err != nil {
		return f, 0, err
	}
	f.payload = buf[hlen:n:n]
	ws.Cipher(f.payload, mask, 0)
	return f, n, nil
}

// wsHeaderLen is the size of an unmasked server frame header for a payload
// of n bytes.
func wsHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

// putWSHeader writes a final unmasked frame header into dst and returns its
// size.
func putWSHeader(dst []byte, op byte, n int) int {
	dst[0] = 0x80 | op
	switch {
	case n < 126:
		dst[1] = byte(n)
		return 2
	case n <= 0xffff:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:4], uint16(n))
		return 4
	default:
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:10], uint64(n))
		return 10
	}
}

// wsControl returns a server control frame.
func wsControl(op byte, payload []byte) []byte {
	if len(payload) > ws.MaxControlFramePayloadSize {
		payload = payload[:ws.MaxControlFramePayloadSize]
	}
	b := make([]byte, 2+len(payload))
	putWSHeader(b, op, len(payload))
	copy(b[2:], payload)
	return b
}

// wsClose returns a close frame with a status code.
func wsClose(code ws.StatusCode) []byte {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(code))
	return wsControl(wsOpClose, p[:])
}

// encodePacket encodes p for transport tr: the bare packet on TCP, one
// binary frame holding it on WebSocket.
func encodePacket(tr uint8, p protocol.Packet) []byte {
	if tr == trTCP {
		return protocol.Encode(p)
	}
	size := p.Size()
	h := wsHeaderLen(size)
	b := make([]byte, h, h+size)
	putWSHeader(b, wsOpBinary, size)
	return protocol.Append(b, p)
}

// shared is a push encoded once for every connection: one buffer holding a
// WebSocket frame whose payload is the TCP bytes. It is immutable once
// built and referenced by the queues of many connections.
type shared struct {
	buf []byte
	off int // start of the TCP bytes in buf
}

func (s shared) bytes(tr uint8) []byte {
	if tr == trWS {
		return s.buf
	}
	return s.buf[s.off:]
}

// sharePacket encodes p once for both transports.
func sharePacket(p protocol.Packet) shared {
	size := p.Size()
	h := wsHeaderLen(size)
	b := make([]byte, h, h+size)
	putWSHeader(b, wsOpBinary, size)
	return shared{buf: protocol.Append(b, p), off: h}
}

// shareBatch encodes a room batch once: TCP connections get the inner
// packets as they are, WebSocket connections one frame holding the Op 9
// packet.
func shareBatch(batch []byte) shared {
	size := protocol.HeaderLen + len(batch)
	h := wsHeaderLen(size)
	b := make([]byte, h+size)
	putWSHeader(b, wsOpBinary, size)
	protocol.PutHeader(b[h:], protocol.Version, protocol.OpRaw, 0, len(batch))
	copy(b[h+protocol.HeaderLen:], batch)
	return shared{buf: b, off: h + protocol.HeaderLen}
}

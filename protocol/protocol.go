// Package protocol is the GoIM client wire codec: goim v2 framing (a 16-byte
// big-endian header followed by the body) and the operation numbers of
// PROTOCOL.md. It has no dependencies outside the standard library and
// decoding allocates nothing: a decoded Packet's Body aliases the input.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header layout, all big-endian:
//
//	offset 0  int32 PackLen   header + body length
//	offset 4  int16 HeaderLen always 16
//	offset 6  int16 Ver
//	offset 8  int32 Op
//	offset 12 int32 Seq
const (
	HeaderLen   = 16
	packLenSize = 4

	// DefaultMaxBody is the default limit on a client-to-server body (64 KiB).
	DefaultMaxBody = 64 << 10

	// Version is the protocol version clients send; replies echo the request's.
	Version = 1
)

// Operation numbers. Ops 0-17 keep goim v2's numbers and meaning.
const (
	OpHandshake       int32 = 0
	OpHandshakeReply  int32 = 1
	OpHeartbeat       int32 = 2
	OpHeartbeatReply  int32 = 3
	OpSendMsg         int32 = 4
	OpSendMsgReply    int32 = 5
	OpDisconnect      int32 = 6
	OpAuth            int32 = 7
	OpAuthReply       int32 = 8
	OpRaw             int32 = 9 // a batch: several complete packets back to back
	OpProtoReady      int32 = 10
	OpProtoFinish     int32 = 11
	OpChangeRoom      int32 = 12
	OpChangeRoomReply int32 = 13
	OpSub             int32 = 14
	OpSubReply        int32 = 15
	OpUnsub           int32 = 16
	OpUnsubReply      int32 = 17
	OpSync            int32 = 18
	OpSyncReply       int32 = 19
	OpAck             int32 = 20
	OpAckReply        int32 = 21
	OpEvent           int32 = 22
	OpTyping          int32 = 23

	// OpBusinessMin is the first op of the business range: opaque bodies
	// pushed through the push API, delivered to connections that accept them.
	OpBusinessMin int32 = 1000
)

// Errors returned by the decoder. ErrShort means more bytes are needed;
// the others mean the stream is unreadable (ErrTooLarge: readable, but the
// packet exceeds the configured body limit).
var (
	ErrShort     = errors.New("protocol: short buffer")
	ErrHeaderLen = errors.New("protocol: header length is not 16")
	ErrPackLen   = errors.New("protocol: pack length below header length")
	ErrTooLarge  = errors.New("protocol: packet too large")
)

// Packet is one protocol packet. Body may alias a decode buffer: copy it
// before keeping it past the buffer's life.
type Packet struct {
	Ver  int16
	Op   int32
	Seq  int32
	Body []byte
}

// Header is a decoded packet header.
type Header struct {
	PackLen   int32
	HeaderLen int16
	Ver       int16
	Op        int32
	Seq       int32
}

// BodyLen returns the body length announced by the header.
func (h Header) BodyLen() int { return int(h.PackLen) - HeaderLen }

// ParseHeader decodes and validates the 16-byte header at the start of b.
// maxBody <= 0 means no body limit. On ErrTooLarge the header is still
// returned so that the caller can answer the packet's Ver and Seq.
func ParseHeader(b []byte, maxBody int) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShort
	}
	h := Header{
		PackLen:   int32(binary.BigEndian.Uint32(b[0:4])),
		HeaderLen: int16(binary.BigEndian.Uint16(b[4:6])),
		Ver:       int16(binary.BigEndian.Uint16(b[6:8])),
		Op:        int32(binary.BigEndian.Uint32(b[8:12])),
		Seq:       int32(binary.BigEndian.Uint32(b[12:16])),
	}
	if h.HeaderLen != HeaderLen {
		return h, ErrHeaderLen
	}
	if h.PackLen < HeaderLen {
		return h, ErrPackLen
	}
	if maxBody > 0 && h.BodyLen() > maxBody {
		return h, ErrTooLarge
	}
	return h, nil
}

// Decode decodes the first packet of b. It returns the packet, the number of
// bytes it used, and an error: ErrShort when b holds less than a whole
// packet (read more and retry), or a header error. It never allocates; the
// packet's Body aliases b.
func Decode(b []byte, maxBody int) (Packet, int, error) {
	h, err := ParseHeader(b, maxBody)
	if err != nil {
		return Packet{Ver: h.Ver, Op: h.Op, Seq: h.Seq}, 0, err
	}
	n := int(h.PackLen)
	if len(b) < n {
		return Packet{}, 0, ErrShort
	}
	return Packet{Ver: h.Ver, Op: h.Op, Seq: h.Seq, Body: b[HeaderLen:n:n]}, n, nil
}

// Size returns the encoded size of p.
func (p Packet) Size() int { return HeaderLen + len(p.Body) }

// PutHeader writes the header of a packet with the given body length into
// b[:16].
func PutHeader(b []byte, ver int16, op, seq int32, bodyLen int) {
	_ = b[HeaderLen-1]
	binary.BigEndian.PutUint32(b[0:4], uint32(HeaderLen+bodyLen))
	binary.BigEndian.PutUint16(b[4:6], HeaderLen)
	binary.BigEndian.PutUint16(b[6:8], uint16(ver))
	binary.BigEndian.PutUint32(b[8:12], uint32(op))
	binary.BigEndian.PutUint32(b[12:16], uint32(seq))
}

// Append appends the encoding of p to dst and returns the extended slice.
func Append(dst []byte, p Packet) []byte {
	n := len(dst)
	dst = grow(dst, p.Size())
	PutHeader(dst[n:], p.Ver, p.Op, p.Seq, len(p.Body))
	copy(dst[n+HeaderLen:], p.Body)
	return dst
}

// Encode returns the encoding of p in a new slice.
func Encode(p Packet) []byte { return Append(make([]byte, 0, p.Size()), p) }

func grow(b []byte, n int) []byte {
	l := len(b)
	if cap(b)-l < n {
		nb := make([]byte, l, 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:l+n]
}

// AppendBatch appends an Op 9 packet whose body is the concatenation of the
// given already-encoded packets.
func AppendBatch(dst []byte, encoded ...[]byte) []byte {
	total := 0
	for _, e := range encoded {
		total += len(e)
	}
	n := len(dst)
	dst = grow(dst, HeaderLen+total)
	PutHeader(dst[n:], Version, OpRaw, 0, total)
	off := n + HeaderLen
	for _, e := range encoded {
		off += copy(dst[off:], e)
	}
	return dst
}

// SplitBatch calls fn for every packet inside the body of an Op 9 batch. It
// stops at the first error of fn or of decoding. It does not allocate.
func SplitBatch(body []byte, fn func(Packet) error) error {
	for len(body) > 0 {
		p, n, err := Decode(body, 0)
		if err != nil {
			if errors.Is(err, ErrShort) {
				return fmt.Errorf("protocol: truncated packet in batch: %w", err)
			}
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
		body = body[n:]
	}
	return nil
}

// OpName returns a short human name of op, for logs and metrics labels.
func OpName(op int32) string {
	switch op {
	case OpHandshake:
		return "handshake"
	case OpHandshakeReply:
		return "handshake_reply"
	case OpHeartbeat:
		return "heartbeat"
	case OpHeartbeatReply:
		return "heartbeat_reply"
	case OpSendMsg:
		return "send"
	case OpSendMsgReply:
		return "send_reply"
	case OpDisconnect:
		return "disconnect"
	case OpAuth:
		return "auth"
	case OpAuthReply:
		return "auth_reply"
	case OpRaw:
		return "batch"
	case OpProtoReady:
		return "proto_ready"
	case OpProtoFinish:
		return "proto_finish"
	case OpChangeRoom:
		return "change_room"
	case OpChangeRoomReply:
		return "change_room_reply"
	case OpSub:
		return "sub"
	case OpSubReply:
		return "sub_reply"
	case OpUnsub:
		return "unsub"
	case OpUnsubReply:
		return "unsub_reply"
	case OpSync:
		return "sync"
	case OpSyncReply:
		return "sync_reply"
	case OpAck:
		return "ack"
	case OpAckReply:
		return "ack_reply"
	case OpEvent:
		return "event"
	case OpTyping:
		return "typing"
	}
	if op >= OpBusinessMin {
		return "business"
	}
	return "unknown"
}

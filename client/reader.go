package client

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

// packetReader cuts a byte stream into packets. It reads into one buffer
// that grows to hold the largest packet seen and shrinks back once that
// packet is consumed, so steady-state reading allocates nothing. It is used
// by one goroutine at a time.
type packetReader struct {
	r        io.Reader
	buf      []byte
	start    int // first unconsumed byte
	end      int // end of valid data
	initSize int
	maxBody  int
}

func newPacketReader(r io.Reader, initSize, maxBody int) *packetReader {
	return &packetReader{r: r, initSize: initSize, maxBody: maxBody}
}

// shrinkAbove is the buffer size beyond which an empty buffer is replaced by
// a fresh one of initSize (a big packet passed).
const shrinkAbove = 64 << 10

// next returns the next packet. Its Body aliases the reader's buffer and is
// valid until the following call. Errors are the underlying reader's (io.EOF
// at a packet boundary, io.ErrUnexpectedEOF inside a packet) or a protocol
// error wrapping ErrProtocol.
func (pr *packetReader) next() (protocol.Packet, error) {
	for {
		need := protocol.HeaderLen
		if pr.end > pr.start {
			p, n, err := protocol.Decode(pr.buf[pr.start:pr.end], pr.maxBody)
			if err == nil {
				pr.start += n
				return p, nil
			}
			if err != protocol.ErrShort {
				return protocol.Packet{}, fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			if pr.end-pr.start >= protocol.HeaderLen {
				// The header is valid (Decode checked it): wait for the body.
				h, _ := protocol.ParseHeader(pr.buf[pr.start:pr.end], pr.maxBody)
				need = int(h.PackLen)
			}
		}
		pr.makeRoom(need)
		n, err := pr.r.Read(pr.buf[pr.end:])
		pr.end += n
		if n > 0 {
			continue
		}
		if err == nil {
			continue
		}
		if err == io.EOF && pr.end > pr.start {
			err = io.ErrUnexpectedEOF
		}
		return protocol.Packet{}, err
	}
}

// makeRoom makes sure that buf can hold need bytes from start and that
// there is free space after end.
func (pr *packetReader) makeRoom(need int) {
	if pr.start == pr.end {
		pr.start, pr.end = 0, 0
		if pr.buf == nil || (len(pr.buf) > shrinkAbove && need <= pr.initSize) {
			pr.buf = make([]byte, max(pr.initSize, need))
			return
		}
	}
	if pr.start+need <= len(pr.buf) && pr.end < len(pr.buf) {
		return
	}
	if need <= len(pr.buf) {
		// Enough space once the unconsumed bytes are moved to the front.
		pr.end = copy(pr.buf, pr.buf[pr.start:pr.end])
		pr.start = 0
		return
	}
	size := max(need, 2*len(pr.buf))
	if limit := protocol.HeaderLen + pr.maxBody; pr.maxBody > 0 && size > limit {
		size = max(need, limit)
	}
	nb := make([]byte, size)
	pr.end = copy(nb, pr.buf[pr.start:pr.end])
	pr.start = 0
	pr.buf = nb
}

// wsFrameReader unwraps the payloads of the server's WebSocket data frames
// into a byte stream (the packets inside are cut by a packetReader), and
// answers control frames: ping with pong, close with close.
type wsFrameReader struct {
	src       *bufio.Reader
	remaining int64 // payload bytes left in the current data frame
	masked    bool
	mask      [4]byte
	off       int
	hdr       [ws.MaxHeaderSize]byte
	ctl       [125]byte
	// control writes a control frame back (pong, close). It may be nil.
	control func(op ws.OpCode, payload []byte)
}

// wsCloseError is returned when the server sends a close frame.
type wsCloseError struct {
	code   ws.StatusCode
	reason string
}

func (e *wsCloseError) Error() string {
	return fmt.Sprintf("websocket closed by server: %d %s", e.code, e.reason)
}

func (r *wsFrameReader) Read(p []byte) (int, error) {
	for r.remaining == 0 {
		h, err := ws.ReadHeaderBuffer(r.src, r.hdr[:])
		if err != nil {
			if err == io.EOF {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("websocket header: %w", err)
		}
		if h.Rsv != 0 {
			return 0, fmt.Errorf("%w: websocket frame with reserved bits %x", ErrProtocol, h.Rsv)
		}
		if h.Length < 0 {
			return 0, fmt.Errorf("%w: websocket frame length %d", ErrProtocol, h.Length)
		}
		if h.OpCode.IsControl() {
			if h.Length > int64(len(r.ctl)) || !h.Fin {
				return 0, fmt.Errorf("%w: bad websocket control frame", ErrProtocol)
			}
			payload := r.ctl[:h.Length]
			if _, err := io.ReadFull(r.src, payload); err != nil {
				return 0, fmt.Errorf("websocket control frame: %w", err)
			}
			if h.Masked {
				ws.Cipher(payload, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				if r.control != nil {
					r.control(ws.OpPong, payload)
				}
			case ws.OpClose:
				code, reason := ws.ParseCloseFrameData(payload)
				if r.control != nil {
					r.control(ws.OpClose, payload[:min(2, len(payload))])
				}
				return 0, &wsCloseError{code: code, reason: reason}
			}
			continue
		}
		switch h.OpCode {
		case ws.OpBinary, ws.OpText, ws.OpContinuation:
		default:
			return 0, fmt.Errorf("%w: websocket opcode %d", ErrProtocol, h.OpCode)
		}
		r.remaining = h.Length
		r.masked = h.Masked
		r.mask = h.Mask
		r.off = 0
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	n, err := r.src.Read(p)
	if r.masked {
		ws.Cipher(p[:n], r.mask, r.off)
	}
	r.off += n
	r.remaining -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// slab hands out copies of packet bodies carved from shared chunks, so that
// delivering a small push costs no allocation of its own. A body keeps its
// whole chunk (slabSize) alive while the application holds it. Used by the
// reader goroutine only.
type slab struct {
	buf []byte
}

const slabSize = 8 << 10

func (s *slab) copy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if len(b) > slabSize/4 {
		return bytes.Clone(b)
	}
	if cap(s.buf)-len(s.buf) < len(b) {
		s.buf = make([]byte, 0, slabSize)
	}
	n := len(s.buf)
	s.buf = append(s.buf, b...)
	return s.buf[n:len(s.buf):len(s.buf)]
}

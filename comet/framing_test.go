package comet

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/goimdev/goim/protocol"
)

func linkBuffer(data []byte) *netpoll.LinkBuffer {
	lb := netpoll.NewLinkBuffer()
	_, _ = lb.WriteBinary(bytes.Clone(data))
	_ = lb.Flush()
	return lb
}

func TestReadPacket(t *testing.T) {
	good := protocol.Encode(protocol.Packet{Ver: 1, Op: 7, Seq: 3, Body: []byte("hello")})
	tests := []struct {
		name    string
		in      []byte
		maxPack int
		want    string // "" ok, else the error kind
	}{
		{"whole", good, 0, ""},
		{"short header", good[:10], 0, "short"},
		{"short body", good[:18], 0, "short"},
		{"header len", rawHeader(20, 12, 7), 0, "unreadable"},
		{"pack len", rawHeader(4, 16, 7), 0, "unreadable"},
		{"too large", rawHeader(16+65, 16, 7), 0, protocol.CodePacketTooLarge},
		{"pre-auth", good, 20, protocol.CodePacketTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, n, err := readPacket(linkBuffer(tt.in), noBlock{}, 64, tt.maxPack)
			var cr *closeReason
			switch {
			case tt.want == "" && err == nil:
				if n != len(good) || p.Op != 7 || p.Seq != 3 || string(p.Body) != "hello" {
					t.Fatalf("got %+v n %d", p, n)
				}
			case tt.want == "unreadable" && errors.Is(err, errUnreadable):
			case tt.want == "short" && err != nil && !errors.Is(err, errUnreadable) && !errors.As(err, &cr):
			case errors.As(err, &cr) && cr.code == tt.want:
			default:
				t.Fatalf("err %v, want %s", err, tt.want)
			}
		})
	}
}

func TestReadPacketAllocs(t *testing.T) {
	pkt := protocol.Encode(protocol.Packet{Ver: 1, Op: 2, Seq: 1, Body: make([]byte, 100)})
	lb := netpoll.NewLinkBuffer(4096)
	allocs := testing.AllocsPerRun(1000, func() {
		buf, _ := lb.Malloc(len(pkt))
		copy(buf, pkt)
		_ = lb.Flush()
		if _, _, err := readPacket(lb, noBlock{}, 1024, 0); err != nil {
			t.Fatal(err)
		}
		_ = lb.Release()
	})
	if allocs > 0 {
		t.Fatalf("readPacket allocates %.1f times per packet", allocs)
	}
}

func TestReadWSFrame(t *testing.T) {
	pkt := protocol.Encode(protocol.Packet{Ver: 1, Op: 2, Seq: 1, Body: bytes.Repeat([]byte("z"), 300)})
	f, n, err := readWSFrame(linkBuffer(wsFrameBytes(0x2, true, pkt)), noBlock{}, 1024)
	if err != nil || !f.fin || f.op != 0x2 || !bytes.Equal(f.payload, pkt) || n != 2+2+4+len(pkt) {
		t.Fatalf("frame %+v n %d err %v", f, n, err)
	}
	big := wsFrameBytes(0x2, true, make([]byte, 70000))
	if _, _, err = readWSFrame(linkBuffer(big), noBlock{}, 1<<20); err != nil {
		t.Fatalf("64-bit length: %v", err)
	}
	var cr *closeReason
	if _, _, err = readWSFrame(linkBuffer(big), noBlock{}, 1024); !errors.As(err, &cr) || cr.code != protocol.CodePacketTooLarge {
		t.Fatalf("limit: %v", err)
	}
	huge := []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4} // 2^63 bytes
	if _, _, err = readWSFrame(linkBuffer(huge), noBlock{}, 1024); !errors.As(err, &cr) {
		t.Fatalf("2^63 length: %v", err)
	}
}

// FuzzReadPacket feeds arbitrary bytes to the TCP packet reader: it must not
// panic, must agree with protocol.Decode and must respect the body limit.
func FuzzReadPacket(f *testing.F) {
	f.Add(protocol.Encode(protocol.Packet{Ver: 1, Op: 7, Seq: 1, Body: []byte(`{"token":"x"}`)}))
	f.Add(append(protocol.Encode(protocol.Packet{Ver: 1, Op: 2}), protocol.Encode(protocol.Packet{Ver: 1, Op: 4, Body: []byte("x")})...))
	f.Add(rawHeader(0x7fffffff, 16, 7))
	f.Add(rawHeader(3, 16, 7))
	f.Add(rawHeader(20, 17, 7))
	const maxBody = 256
	f.Fuzz(func(t *testing.T, data []byte) {
		lb := linkBuffer(data)
		rest := data
		for lb.Len() > 0 {
			p, n, err := readPacket(lb, noBlock{}, maxBody, 0)
			want, wn, werr := protocol.Decode(rest, maxBody)
			if (err == nil) != (werr == nil) {
				t.Fatalf("readPacket err %v, Decode err %v", err, werr)
			}
			if err != nil {
				return
			}
			if len(p.Body) > maxBody || n != protocol.HeaderLen+len(p.Body) || n != wn ||
				p.Op != want.Op || p.Seq != want.Seq || !bytes.Equal(p.Body, want.Body) {
				t.Fatalf("packet %+v (%d) vs %+v (%d)", p, n, want, wn)
			}
			_ = lb.Release()
			rest = rest[n:]
		}
	})
}

// FuzzReadWSFrame feeds arbitrary bytes to the WebSocket frame reader: it
// must not panic and must respect the payload and control frame limits.
func FuzzReadWSFrame(f *testing.F) {
	pkt := protocol.Encode(protocol.Packet{Ver: 1, Op: 2, Seq: 1})
	f.Add(wsFrameBytes(0x2, true, pkt))
	f.Add(append(wsFrameBytes(0x1, false, pkt[:4]), wsFrameBytes(0x0, true, pkt[4:])...))
	f.Add(wsFrameBytes(0x9, true, []byte("ping")))
	f.Add(wsFrameBytes(0x8, true, []byte{3, 232}))
	f.Add(wsFrameBytes(0x2, true, make([]byte, 300)))
	f.Add([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0x82, 0x05, 'h', 'e', 'l', 'l', 'o'})
	const maxPayload = 512
	f.Fuzz(func(t *testing.T, data []byte) {
		lb := linkBuffer(data)
		consumed := 0
		for lb.Len() > 0 {
			fr, n, err := readWSFrame(lb, noBlock{}, maxPayload)
			if err != nil {
				return
			}
			if len(fr.payload) > maxPayload || n < 6+len(fr.payload) || consumed+n > len(data) {
				t.Fatalf("frame of %d bytes (consumed %d) from %d bytes", len(fr.payload), n, len(data))
			}
			if fr.op&0x08 != 0 && (!fr.fin || len(fr.payload) > 125) {
				t.Fatalf("bad control frame passed: %+v", fr)
			}
			consumed += n
			_ = lb.Release()
		}
	})
}

func TestWheel(t *testing.T) {
	ms := int64(time.Millisecond)
	w := newWheel(10*time.Millisecond, 0)
	a, b, c := &conn{wslot: -1}, &conn{wslot: -1}, &conn{wslot: -1}
	w.add(a, 25*ms)
	w.add(b, 100*ms)
	w.add(c, 20*wheelSlots*ms) // beyond the span
	if w.len() != 3 {
		t.Fatalf("len %d", w.len())
	}
	if due := w.advance(20*ms, nil); len(due) != 0 {
		t.Fatalf("due early: %d", len(due))
	}
	if due := w.advance(30*ms, nil); len(due) != 1 || due[0] != a {
		t.Fatalf("due at 30ms: %v", due)
	}
	w.add(b, 50*ms) // moved earlier
	if due := w.advance(60*ms, nil); len(due) != 1 || due[0] != b {
		t.Fatalf("due at 60ms: %v", due)
	}
	w.remove(b) // not filed: no-op
	// c is re-filed when the farthest slot comes round, and due at its deadline.
	if due := w.advance(12*wheelSlots*ms, nil); len(due) != 0 {
		t.Fatalf("c due early")
	}
	if got := w.each(nil); len(got) != 1 || got[0] != c {
		t.Fatalf("each %v", got)
	}
	if due := w.advance(21*wheelSlots*ms, nil); len(due) != 1 || due[0] != c {
		t.Fatalf("c not due: %v", due)
	}
	if w.len() != 0 {
		t.Fatalf("len %d", w.len())
	}
}

// arrivingReader is a streamReader over data whose bytes arrive in steps:
// each Peek makes the next step visible after it returns (as if the
// network delivered more while the caller looked). A Peek for more than
// will ever arrive fails instead of blocking forever.
type arrivingReader struct {
	data    []byte
	visible int
	steps   []int // visible byte counts after each Peek
}

func (r *arrivingReader) Len() int { return r.visible }

func (r *arrivingReader) Peek(n int) ([]byte, error) {
	if n > len(r.data) {
		return nil, fmt.Errorf("Peek(%d) would wait forever: only %d bytes will ever arrive", n, len(r.data))
	}
	if n > r.visible {
		r.visible = n // a blocking Peek returns once n bytes are there
	}
	b := r.data[:n]
	if len(r.steps) > 0 {
		r.visible, r.steps = max(r.visible, r.steps[0]), r.steps[1:]
	}
	return b, nil
}

func (r *arrivingReader) Next(n int) ([]byte, error) {
	b, err := r.Peek(n)
	if err == nil {
		r.Skip(n)
	}
	return b, err
}

func (r *arrivingReader) Skip(n int) error {
	r.data, r.visible = r.data[n:], r.visible-n
	return nil
}

// An upgrade request seen in part, whose rest arrives while the first part
// is being looked at, must not wait for a byte that never comes (the bug
// behind a WebSocket upgrade left unanswered until the handshake timeout).
func TestUpgradeRestArrivesDuringPeek(t *testing.T) {
	req := []byte("GET /sub?token=" + strings.Repeat("x", 300) + " HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	s := &Server{cfg: Config{MaxPreAuthBytes: 8 << 10}}
	c := &conn{s: s, tr: trWS}
	r := &arrivingReader{data: req, visible: 200, steps: []int{len(req)}}
	// First look: incomplete; the rest arrives during that Peek.
	if err := c.upgrade(r); err != nil {
		t.Fatalf("incomplete request: %v", err)
	}
	if r.Len() != len(req) {
		t.Fatalf("the whole request should be buffered now, have %d of %d", r.Len(), len(req))
	}
}

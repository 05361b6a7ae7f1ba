package loadgen

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

// chunkConn is a net.Conn whose reads return the stream in chunks of random
// sizes; writes are collected.
type chunkConn struct {
	net.Conn // nil: only Read, Write, Close and deadlines are used
	data     []byte
	r        *rand.Rand
	written  bytes.Buffer
}

func (c *chunkConn) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(b), len(c.data), 1+c.r.IntN(3000))
	copy(b, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}
func (c *chunkConn) Write(b []byte) (int, error)      { return c.written.Write(b) }
func (c *chunkConn) Close() error                     { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

func testPackets() []protocol.Packet {
	var ps []protocol.Packet
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 300 {
		size := r.IntN(200)
		switch i % 50 {
		case 7:
			size = 70 << 10 // bigger than the shrink threshold
		case 8:
			size = 0
		}
		body := make([]byte, size)
		for j := range body {
			body[j] = byte(i + j)
		}
		ps = append(ps, protocol.Packet{Ver: 1, Op: int32(1000 + i), Seq: int32(i), Body: body})
	}
	return ps
}

func checkPackets(t *testing.T, c *client, want []protocol.Packet) {
	t.Helper()
	for i, w := range want {
		p, err := c.next()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.Op != w.Op || p.Seq != w.Seq || !bytes.Equal(p.Body, w.Body) {
			t.Fatalf("packet %d: op %d seq %d body %d bytes, want op %d seq %d body %d bytes", i, p.Op, p.Seq, len(p.Body), w.Op, w.Seq, len(w.Body))
		}
	}
	if _, err := c.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last packet: %v, want EOF", err)
	}
	if len(c.buf) > readBufShrink && c.end == c.start {
		t.Fatalf("buffer of %d bytes kept after the stream", len(c.buf))
	}
}

func TestClientReadsTCPStream(t *testing.T) {
	want := testPackets()
	var stream []byte
	for _, p := range want {
		stream = protocol.Append(stream, p)
	}
	for seed := range uint64(5) {
		c := &client{nc: &chunkConn{data: bytes.Clone(stream), r: rand.New(rand.NewPCG(seed, 1))}}
		checkPackets(t, c, want)
	}
}

func TestClientReadsWSStream(t *testing.T) {
	want := testPackets()
	var stream bytes.Buffer
	for i, p := range want {
		pkt := protocol.Encode(p)
		switch i % 4 {
		case 0: // a plain binary frame
			_ = ws.WriteFrame(&stream, ws.NewBinaryFrame(pkt))
		case 1: // a ping first, then a masked text frame
			_ = ws.WriteFrame(&stream, ws.NewPingFrame([]byte("hi")))
			_ = ws.WriteFrame(&stream, ws.MaskFrame(ws.NewTextFrame(pkt)))
		case 2: // fragmented in three
			a, b := len(pkt)/3, 2*len(pkt)/3
			_ = ws.WriteFrame(&stream, ws.NewFrame(ws.OpBinary, false, pkt[:a]))
			_ = ws.WriteFrame(&stream, ws.NewFrame(ws.OpContinuation, false, pkt[a:b]))
			_ = ws.WriteFrame(&stream, ws.NewFrame(ws.OpContinuation, true, pkt[b:]))
		case 3: // a pong is ignored
			_ = ws.WriteFrame(&stream, ws.NewPongFrame(nil))
			_ = ws.WriteFrame(&stream, ws.NewBinaryFrame(pkt))
		}
	}
	_ = ws.WriteFrame(&stream, ws.NewCloseFrame(nil))
	cc := &chunkConn{data: stream.Bytes(), r: rand.New(rand.NewPCG(9, 9))}
	c := &client{nc: cc, ws: true}
	checkPackets(t, c, want)
	// Every ping was answered with a masked pong.
	pongs := 0
	for r := bytes.NewReader(cc.written.Bytes()); r.Len() > 0; {
		f, err := ws.ReadFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode == ws.OpPong && f.Header.Masked {
			pongs++
		}
	}
	if pongs != len(want)/4 {
		t.Fatalf("%d pongs, want %d", pongs, len(want)/4)
	}
}

func TestClientRejectsBrokenStreams(t *testing.T) {
	tests := []struct {
		name string
		ws   bool
		data []byte
	}{
		{"header length", false, []byte{0, 0, 0, 20, 0, 12, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 1, 2, 3, 4}},
		{"pack length below header", false, []byte{0, 0, 0, 3, 0, 16, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0}},
		{"ws frame too large", true, []byte{0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0}},
		{"ws message with trailing bytes", true, append([]byte{0x82, 18}, append(protocol.Encode(protocol.Packet{Op: 1000}), 1, 2)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &client{nc: &chunkConn{data: tt.data, r: rand.New(rand.NewPCG(1, 1))}, ws: tt.ws}
			if _, err := c.next(); err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("next() = %v, want a protocol error", err)
			}
		})
	}
}

func FuzzClientNext(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add(protocol.Encode(protocol.Packet{Ver: 1, Op: 1000, Body: []byte("hello")}), false)
	f.Add(protocol.AppendBatch(nil, protocol.Encode(protocol.Packet{Op: 3})), false)
	var frame bytes.Buffer
	_ = ws.WriteFrame(&frame, ws.NewBinaryFrame(protocol.Encode(protocol.Packet{Op: 8, Body: []byte("{}")})))
	f.Add(frame.Bytes(), true)
	f.Fuzz(func(t *testing.T, data []byte, overWS bool) {
		c := &client{nc: &chunkConn{data: data, r: rand.New(rand.NewPCG(uint64(len(data)), 3))}, ws: overWS}
		w := NewWorker(0, nil)
		for range 1000 {
			p, err := c.next()
			if err != nil {
				return
			}
			if p.Op == protocol.OpRaw {
				_ = protocol.SplitBatch(p.Body, func(in protocol.Packet) error { w.handle(c, in); return nil })
			} else {
				w.handle(c, p)
			}
		}
	})
}

// loopConn replays one stream forever, in reads of at most 4 KiB.
type loopConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *loopConn) Read(b []byte) (int, error) {
	n := copy(b[:min(len(b), 4096)], c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// BenchmarkClientDeliver is the worker's per-delivery path: read, decode,
// account and record the latency of one 64-byte push.
func BenchmarkClientDeliver(b *testing.B) {
	var stream []byte
	body := make([]byte, 64)
	for i := range 64 {
		PutPayload(body, time.Now().UnixNano(), int64(i+1))
		stream = protocol.Append(stream, protocol.Packet{Ver: 1, Op: 1000, Body: body})
	}
	w := NewWorker(0, nil)
	c := &client{nc: &loopConn{data: stream}, record: true, hist: w.latency[0]}
	b.ReportAllocs()
	for b.Loop() {
		p, err := c.next()
		if err != nil {
			b.Fatal(err)
		}
		w.handle(c, p)
	}
}

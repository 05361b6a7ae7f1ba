package client

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

func encodeAll(ps ...protocol.Packet) []byte {
	var b []byte
	for _, p := range ps {
		b = protocol.Append(b, p)
	}
	return b
}

// serverFrames wraps each chunk in an unmasked (server) binary frame.
func serverFrames(chunks ...[]byte) []byte {
	var buf bytes.Buffer
	for _, c := range chunks {
		if err := ws.WriteFrame(&buf, ws.NewBinaryFrame(c)); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func readAll(pr *packetReader) ([]protocol.Packet, error) {
	var out []protocol.Packet
	for {
		p, err := pr.next()
		if err != nil {
			return out, err
		}
		p.Body = bytes.Clone(p.Body)
		out = append(out, p)
	}
}

func TestPacketReader(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100<<10)
	packets := []protocol.Packet{
		{Ver: 1, Op: 3, Seq: 1, Body: []byte{0, 0, 0, 7}},
		{Ver: 1, Op: 1001, Body: nil},
		{Ver: 1, Op: 22, Body: big},
		{Ver: 1, Op: 1002, Body: []byte("after the big one")},
	}
	stream := encodeAll(packets...)
	tests := []struct {
		name    string
		r       io.Reader
		maxBody int
		want    int   // packets before the error
		wantErr error // final error
	}{
		{"whole", bytes.NewReader(stream), 1 << 20, 4, io.EOF},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(stream)), 1 << 20, 4, io.EOF},
		{"half reads", iotest.HalfReader(bytes.NewReader(stream)), 1 << 20, 4, io.EOF},
		{"truncated", bytes.NewReader(stream[:len(stream)-3]), 1 << 20, 3, io.ErrUnexpectedEOF},
		{"too large", bytes.NewReader(stream), 64 << 10, 2, ErrProtocol},
		{"websocket frames", &wsFrameReader{src: bufioReader(serverFrames(stream[:10], stream[10:50000], stream[50000:]))}, 1 << 20, 4, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(newPacketReader(tc.r, 16, tc.maxBody))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if len(got) != tc.want {
				t.Fatalf("got %d packets, want %d", len(got), tc.want)
			}
			for i, p := range got {
				w := packets[i]
				if p.Op != w.Op || p.Seq != w.Seq || !bytes.Equal(p.Body, w.Body) {
					t.Fatalf("packet %d = op %d seq %d len %d", i, p.Op, p.Seq, len(p.Body))
				}
			}
		})
	}
}

func TestPacketReaderBadHeader(t *testing.T) {
	b := encodeAll(protocol.Packet{Ver: 1, Op: 2})
	binary.BigEndian.PutUint16(b[4:6], 20)
	_, err := newPacketReader(bytes.NewReader(b), 16, 1<<20).next()
	if !errors.Is(err, ErrProtocol) || !errors.Is(err, protocol.ErrHeaderLen) {
		t.Fatalf("err = %v", err)
	}
}

func TestPacketReaderShrinks(t *testing.T) {
	stream := encodeAll(
		protocol.Packet{Ver: 1, Op: 1001, Body: make([]byte, 200<<10)},
		protocol.Packet{Ver: 1, Op: 1002, Body: []byte("small")},
	)
	pr := newPacketReader(iotest.HalfReader(bytes.NewReader(stream)), 1024, 1<<20)
	if p, err := pr.next(); err != nil || len(p.Body) != 200<<10 {
		t.Fatalf("big: %v", err)
	}
	if p, err := pr.next(); err != nil || string(p.Body) != "small" {
		t.Fatalf("small: %q %v", p.Body, err)
	}
	if _, err := pr.next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if len(pr.buf) != 1024 {
		t.Fatalf("buffer not shrunk: %d bytes", len(pr.buf))
	}
}

func TestWSFrameReaderRejects(t *testing.T) {
	var reserved bytes.Buffer
	f := ws.NewBinaryFrame([]byte("x"))
	f.Header.Rsv = ws.Rsv(true, false, false)
	_ = ws.WriteFrame(&reserved, f)
	var bigPing bytes.Buffer
	_ = ws.WriteHeader(&bigPing, ws.Header{Fin: true, OpCode: ws.OpPing, Length: 126})
	bigPing.Write(make([]byte, 126))
	tests := []struct {
		name string
		in   []byte
	}{
		{"reserved bits", reserved.Bytes()},
		{"big control frame", bigPing.Bytes()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fr := &wsFrameReader{src: bufioReader(tc.in)}
			if _, err := fr.Read(make([]byte, 10)); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestWSFrameReaderMasked(t *testing.T) {
	// A masked server frame is tolerated and unmasked.
	enc := protocol.Encode(protocol.Packet{Ver: 1, Op: 1001, Body: []byte("masked payload")})
	var buf bytes.Buffer
	_ = ws.WriteFrame(&buf, ws.MaskFrameWith(ws.NewBinaryFrame(bytes.Clone(enc)), [4]byte{1, 2, 3, 4}))
	p, err := newPacketReader(iotest.OneByteReader(&wsFrameReader{src: bufioReader(buf.Bytes())}), 16, 1<<20).next()
	if err != nil || string(p.Body) != "masked payload" {
		t.Fatalf("p = %q, %v", p.Body, err)
	}
}

func TestAppendPacketWS(t *testing.T) {
	for _, n := range []int{0, 100, 1000, 70000} {
		body := bytes.Repeat([]byte{'a'}, n)
		b := appendPacket(nil, true, 1000, 5, body)
		h, err := ws.ReadHeader(bytes.NewReader(b))
		if err != nil || !h.Masked || h.OpCode != ws.OpBinary || !h.Fin || h.Length != int64(protocol.HeaderLen+n) {
			t.Fatalf("n=%d header %+v %v", n, h, err)
		}
		payload := b[len(b)-int(h.Length):]
		ws.Cipher(payload, h.Mask, 0)
		p, _, err := protocol.Decode(payload, 0)
		if err != nil || p.Op != 1000 || p.Seq != 5 || !bytes.Equal(p.Body, body) {
			t.Fatalf("n=%d decode %v", n, err)
		}
	}
}

func TestParseDisconnect(t *testing.T) {
	var addrs []string
	for range 40 {
		addrs = append(addrs, "10.0.0.1:3101")
	}
	tests := []struct {
		name string
		body string
		want func(*DisconnectError) bool
	}{
		{"full", `{"code":"server_draining","reason":"r","reconnect_after_ms":1500,"addrs":["a:1","b:2"]}`, func(d *DisconnectError) bool {
			return d.Code == "server_draining" && d.Reason == "r" && d.ReconnectAfter == 1500*time.Millisecond && len(d.Addrs) == 2
		}},
		{"huge wait is capped", `{"code":"x","reconnect_after_ms":9223372036854775807}`, func(d *DisconnectError) bool { return d.ReconnectAfter == maxReconnectAfter }},
		{"too many addrs", string(mustJSON(map[string]any{"code": "x", "addrs": addrs})), func(d *DisconnectError) bool { return len(d.Addrs) == maxDisconnectAddrs }},
		{"garbage", `not json`, func(d *DisconnectError) bool { return d.Code == "" && d.Reason != "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := parseDisconnect([]byte(tc.body)); !tc.want(d) {
				t.Fatalf("got %+v", d)
			}
		})
	}
}

func TestBackoffAndCandidates(t *testing.T) {
	c := &Client{cfg: Config{Addr: "a:1", Addrs: []string{"b:1", "c:1"}, MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second}}
	for n := range 100 {
		limit := time.Second
		if n < 10 {
			limit = min(limit, 10*time.Millisecond<<n)
		}
		if d := c.backoff(n); d < 0 || d > limit {
			t.Fatalf("backoff(%d) = %v, limit %v", n, d, limit)
		}
	}
	tests := []struct {
		name string
		last string
		de   *DisconnectError
		want []string
	}{
		{"initial", "", nil, []string{"a:1", "b:1", "c:1"}},
		{"drop keeps last first", "c:1", nil, []string{"c:1", "a:1", "b:1"}},
		{"draining tries addrs first and the drained node last", "a:1", &DisconnectError{Addrs: []string{"d:1", "b:1"}}, []string{"d:1", "b:1", "c:1", "a:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := c.candidates(tc.last, tc.de)
			if !equalStrings(got, tc.want) {
				t.Fatalf("candidates = %v, want %v", got, tc.want)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestHotPathAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	body := []byte("hello")
	for _, isWS := range []bool{false, true} {
		if n := testing.AllocsPerRun(100, func() { buf = appendPacket(buf[:0], isWS, 1000, 1, body) }); n != 0 {
			t.Errorf("appendPacket(ws=%v) allocates %v times", isWS, n)
		}
	}
	stream := bytes.Repeat(encodeAll(protocol.Packet{Ver: 1, Op: 1001, Body: body}), 1000)
	r := bytes.NewReader(stream)
	pr := newPacketReader(r, 4096, 1<<20)
	if _, err := pr.next(); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(500, func() {
		if _, err := pr.next(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("packetReader.next allocates %v times", n)
	}
}

// FuzzPacketReader feeds arbitrary server bytes, as a TCP stream and as
// WebSocket frames, through the SDK's reader and batch splitting.
func FuzzPacketReader(f *testing.F) {
	f.Add(encodeAll(protocol.Packet{Ver: 1, Op: 8, Seq: 1, Body: []byte(`{"user_id":1}`)}, protocol.Packet{Ver: 1, Op: 1001}))
	f.Add(protocol.AppendBatch(nil, protocol.Encode(protocol.Packet{Ver: 1, Op: 22, Body: []byte("{}")}), protocol.Encode(protocol.Packet{Ver: 1, Op: 9})))
	f.Add(serverFrames(encodeAll(protocol.Packet{Ver: 1, Op: 1001, Body: []byte("x")})))
	f.Add([]byte{0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxBody = 4096
		check := func(r io.Reader, tcp bool) {
			pr := newPacketReader(r, 16, maxBody)
			consumed := 0
			for {
				p, err := pr.next()
				if err != nil {
					return
				}
				if len(p.Body) > maxBody {
					t.Fatalf("body of %d bytes beyond the limit", len(p.Body))
				}
				if tcp {
					// Re-encoding gives back the input bytes.
					enc := protocol.Encode(p)
					if !bytes.Equal(enc, data[consumed:consumed+len(enc)]) {
						t.Fatalf("packet at %d does not re-encode to its input", consumed)
					}
					consumed += len(enc)
				}
				if p.Op == protocol.OpRaw {
					_ = protocol.SplitBatch(p.Body, func(ip protocol.Packet) error {
						if protocol.HeaderLen+len(ip.Body) > len(p.Body) {
							t.Fatal("inner packet larger than its batch")
						}
						return nil
					})
				}
			}
		}
		check(bytes.NewReader(data), true)
		check(&wsFrameReader{src: bufioReader(data)}, false)
		parseDisconnect(data)
		_, _ = ParseEvent(data)
	})
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

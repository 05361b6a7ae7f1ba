package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		p    Packet
	}{
		{"empty body", Packet{Ver: 1, Op: OpHeartbeat, Seq: 7}},
		{"auth", Packet{Ver: 1, Op: OpAuth, Seq: 1, Body: []byte(`{"token":"x"}`)}},
		{"negative seq", Packet{Ver: 2, Op: OpSendMsg, Seq: -5, Body: []byte("hi")}},
		{"business op", Packet{Ver: 1, Op: 1001, Seq: 0, Body: bytes.Repeat([]byte{0xff}, 1000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Encode(tt.p)
			if len(b) != tt.p.Size() {
				t.Fatalf("encoded %d bytes, Size says %d", len(b), tt.p.Size())
			}
			got, n, err := Decode(b, DefaultMaxBody)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(b) || got.Ver != tt.p.Ver || got.Op != tt.p.Op || got.Seq != tt.p.Seq || !bytes.Equal(got.Body, tt.p.Body) {
				t.Fatalf("got %+v n=%d, want %+v", got, n, tt.p)
			}
		})
	}
}

// TestWireLayout pins the goim v2 byte layout.
func TestWireLayout(t *testing.T) {
	b := Encode(Packet{Ver: 1, Op: OpAuth, Seq: 0x01020304, Body: []byte("ab")})
	want := []byte{0, 0, 0, 18, 0, 16, 0, 1, 0, 0, 0, 7, 1, 2, 3, 4, 'a', 'b'}
	if !bytes.Equal(b, want) {
		t.Fatalf("got % x\nwant % x", b, want)
	}
}

func header(packLen int32, headerLen int16) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b, uint32(packLen))
	binary.BigEndian.PutUint16(b[4:], uint16(headerLen))
	binary.BigEndian.PutUint16(b[6:], 1)
	binary.BigEndian.PutUint32(b[8:], uint32(OpSendMsg))
	binary.BigEndian.PutUint32(b[12:], 9)
	return b
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		maxBody int
		want    error
	}{
		{"empty", nil, 0, ErrShort},
		{"partial header", header(20, 16)[:10], 0, ErrShort},
		{"partial body", header(20, 16), 0, ErrShort},
		{"header len 12", header(16, 12), 0, ErrHeaderLen},
		{"header len 0", header(16, 0), 0, ErrHeaderLen},
		{"pack len below 16", header(15, 16), 0, ErrPackLen},
		{"negative pack len", header(-1, 16), 0, ErrPackLen},
		{"too large", header(16+65, 16), 64, ErrTooLarge},
		{"at limit is fine but short", header(16+64, 16), 64, ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := Decode(tt.in, tt.maxBody)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if n != 0 {
				t.Fatalf("consumed %d bytes on error", n)
			}
		})
	}
}

func TestTooLargeKeepsSeq(t *testing.T) {
	p, _, err := Decode(header(1<<20, 16), 1024)
	if !errors.Is(err, ErrTooLarge) || p.Seq != 9 || p.Op != OpSendMsg || p.Ver != 1 {
		t.Fatalf("got %+v, %v", p, err)
	}
}

func TestPipelined(t *testing.T) {
	var stream []byte
	for i := int32(0); i < 5; i++ {
		stream = Append(stream, Packet{Ver: 1, Op: OpHeartbeat, Seq: i, Body: bytes.Repeat([]byte{'x'}, int(i))})
	}
	for i := int32(0); i < 5; i++ {
		p, n, err := Decode(stream, DefaultMaxBody)
		if err != nil {
			t.Fatal(err)
		}
		if p.Seq != i || len(p.Body) != int(i) {
			t.Fatalf("packet %d: %+v", i, p)
		}
		stream = stream[n:]
	}
	if len(stream) != 0 {
		t.Fatalf("%d bytes left", len(stream))
	}
}

func TestBatch(t *testing.T) {
	a := Encode(Packet{Ver: 1, Op: 1000, Body: []byte("one")})
	b := Encode(Packet{Ver: 1, Op: 1001, Body: []byte("two")})
	batch := AppendBatch(nil, a, b)
	p, n, err := Decode(batch, 0)
	if err != nil || n != len(batch) || p.Op != OpRaw {
		t.Fatalf("batch decode: %+v %d %v", p, n, err)
	}
	var got []string
	if err := SplitBatch(p.Body, func(in Packet) error {
		got = append(got, string(in.Body))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Fatalf("inner packets: %q", got)
	}
	if err := SplitBatch(p.Body[:len(p.Body)-1], func(Packet) error { return nil }); err == nil {
		t.Fatal("truncated batch accepted")
	}
	stop := errors.New("stop")
	if err := SplitBatch(p.Body, func(Packet) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("callback error not returned: %v", err)
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	b := Encode(Packet{Ver: 1, Op: OpSendMsg, Seq: 3, Body: []byte(`{"text":"hello"}`)})
	batch := AppendBatch(nil, b, b, b)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, err := Decode(b, DefaultMaxBody); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseHeader(b, DefaultMaxBody); err != nil {
			t.Fatal(err)
		}
		p, _, _ := Decode(batch, 0)
		_ = SplitBatch(p.Body, func(Packet) error { return nil })
	})
	if allocs != 0 {
		t.Fatalf("decode allocates %v times per run", allocs)
	}
}

func TestAppendReusesCapacity(t *testing.T) {
	buf := make([]byte, 0, 256)
	p := Packet{Ver: 1, Op: OpHeartbeatReply, Body: []byte{0, 0, 0, 1}}
	allocs := testing.AllocsPerRun(1000, func() { buf = Append(buf[:0], p) })
	if allocs != 0 {
		t.Fatalf("Append into a large enough buffer allocates %v times", allocs)
	}
}

func TestOpName(t *testing.T) {
	for op, want := range map[int32]string{OpAuth: "auth", OpRaw: "batch", 1234: "business", 99: "unknown", OpTyping: "typing"} {
		if got := OpName(op); got != want {
			t.Errorf("OpName(%d) = %q, want %q", op, got, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(Packet{Ver: 1, Op: OpAuth, Seq: 1, Body: []byte(`{"token":""}`)}), 64)
	f.Add(header(16, 12), 0)
	f.Add(AppendBatch(nil, Encode(Packet{Op: 1000, Body: []byte("x")})), 1024)
	f.Add([]byte{}, 10)
	f.Fuzz(func(t *testing.T, b []byte, maxBody int) {
		for len(b) > 0 {
			p, n, err := Decode(b, maxBody)
			if err != nil {
				if n != 0 {
					t.Fatalf("error %v with n=%d", err, n)
				}
				return
			}
			if n < HeaderLen || n > len(b) || n != p.Size() {
				t.Fatalf("bad n=%d for len %d, size %d", n, len(b), p.Size())
			}
			if maxBody > 0 && len(p.Body) > maxBody {
				t.Fatalf("body %d over limit %d", len(p.Body), maxBody)
			}
			if re := Encode(p); !bytes.Equal(re, b[:n]) {
				t.Fatalf("re-encode differs")
			}
			if p.Op == OpRaw {
				_ = SplitBatch(p.Body, func(Packet) error { return nil })
			}
			b = b[n:]
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	buf := Encode(Packet{Ver: 1, Op: OpSendMsg, Seq: 3, Body: bytes.Repeat([]byte{'x'}, 128)})
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, _, err := Decode(buf, DefaultMaxBody); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	p := Packet{Ver: 1, Op: OpSendMsg, Seq: 3, Body: bytes.Repeat([]byte{'x'}, 128)}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(p.Size()))
	for b.Loop() {
		buf = Append(buf[:0], p)
	}
}

func BenchmarkSplitBatch(b *testing.B) {
	one := Encode(Packet{Ver: 1, Op: 1000, Body: bytes.Repeat([]byte{'x'}, 64)})
	var parts [][]byte
	for range 32 {
		parts = append(parts, one)
	}
	batch := AppendBatch(nil, parts...)
	b.ReportAllocs()
	b.SetBytes(int64(len(batch)))
	for b.Loop() {
		p, _, _ := Decode(batch, 0)
		_ = SplitBatch(p.Body, func(Packet) error { return nil })
	}
}

package loadgen

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goimdev/goim/protocol"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// startReader runs w's read loop on a client over nc, with pre already
// read (as the handshake may leave it), and returns the client and a
// channel closed when the loop ends.
func startReader(w *Worker, nc net.Conn, pre []byte) (*client, chan struct{}) {
	c := &client{nc: nc, buf: append([]byte(nil), pre...)}
	c.end = len(pre)
	w.open.Add(1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.readLoop(c)
	}()
	return c, done
}

// The TCP read loop gets every packet of a stream written in chunks of
// random sizes (packets split across reads, bodies larger than the pooled
// buffer), including what was read before it started, and ends on EOF.
func TestReadLoopTCPStream(t *testing.T) {
	ps := testPackets()
	var stream []byte
	for _, p := range ps {
		stream = protocol.Append(stream, p)
	}
	big := protocol.Packet{Ver: 1, Op: 1000, Body: bytes.Repeat([]byte{7}, readBufPooled+100)}
	stream = protocol.Append(stream, big)
	want := int64(len(ps) + 1)
	pre := protocol.Encode(protocol.Packet{Ver: 1, Op: 1000, Body: make([]byte, 20)})
	want++

	w := NewWorker(1, slog.New(slog.DiscardHandler))
	cn, sn := tcpPair(t)
	c, done := startReader(w, cn, pre)
	r := rand.New(rand.NewPCG(1, 2))
	for len(stream) > 0 {
		n := min(len(stream), 1+r.IntN(5000))
		if _, err := sn.Write(stream[:n]); err != nil {
			t.Fatal(err)
		}
		stream = stream[n:]
		if r.IntN(8) == 0 {
			time.Sleep(time.Millisecond) // let the reader drain and wait
		}
	}
	sn.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the read loop did not end on EOF")
	}
	if got := c.delivered.Load(); got != want {
		t.Fatalf("delivered %d packets, want %d", got, want)
	}
	if c.big != nil || len(c.buf) > readBufInit {
		t.Fatalf("after the stream the connection keeps a %d-byte buffer (pooled: %v)", len(c.buf), c.big != nil)
	}
}

// syscr is the process's read system call count (/proc/self/io).
func syscr(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io")
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}

// A room batch of ~4 KB (48 small packets) costs the reader at most two
// read system calls (the data and the EAGAIN before waiting), not one per
// doubling of a small buffer (6 with the 512-byte buffer that shrank back
// after each batch).
func TestReadLoopReadsABatchAtOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts read system calls in /proc/self/io")
	}
	w := NewWorker(1, slog.New(slog.DiscardHandler))
	cn, sn := tcpPair(t)
	c, done := startReader(w, cn, nil)
	var inner []byte
	for i := range 48 {
		b := make([]byte, 64)
		PutPayload(b, time.Now().UnixNano(), int64(i+1))
		inner = protocol.Append(inner, protocol.Packet{Ver: 1, Op: 1000, Body: b})
	}
	batch := inner // a comet writes a room batch's packets to a TCP connection as they are
	const batches = 200
	before := syscr(t)
	for i := range batches {
		if _, err := sn.Write(batch); err != nil {
			t.Fatal(err)
		}
		want := int64(48 * (i + 1))
		for deadline := time.Now().Add(5 * time.Second); c.delivered.Load() < want; {
			if time.Now().After(deadline) {
				t.Fatalf("batch %d: %d delivered, want %d", i, c.delivered.Load(), want)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	reads := syscr(t) - before
	sn.Close()
	<-done
	if perBatch := float64(reads) / batches; perBatch > 2.5 {
		t.Fatalf("%d read system calls for %d batches of %d bytes (%.1f per batch), want at most 2.5", reads, batches, len(batch), perBatch)
	}
}

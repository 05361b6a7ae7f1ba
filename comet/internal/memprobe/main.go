// Command memprobe measures the resident memory a comet server spends per
// idle authenticated connection. It starts a comet with a trivial Logic,
// re-executes itself as a separate client process that opens -n
// connections (TCP, or WebSocket with -ws), authenticates each and then
// idles, and compares the server's VmRSS (from /proc/self/status, after a
// GC and returning freed memory to the OS) before and after.
//
//	go run ./comet/internal/memprobe -n 10000
//
// One process may hold at most 20,000 open files here, hence two processes.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/protocol"
)

func main() {
	n := flag.Int("n", 10000, "connections")
	ws := flag.Bool("ws", false, "use WebSocket")
	flag.IntVar(&heartbeats, "heartbeats", 0, "heartbeats each client sends (and waits for) after auth, before idling")
	client := flag.String("client", "", "internal: run as the client process against this address")
	flag.StringVar(&memProfile, "memprofile", "", "write a heap profile of the server with the connections open")
	flag.Parse()
	if *client != "" {
		runClient(*client, *n, *ws)
		return
	}
	runServer(*n, *ws)
}

type logic struct{ seq atomic.Int64 }

func (l *logic) Connect(ctx context.Context, req *comet.ConnectRequest) (*comet.ConnectReply, error) {
	id := l.seq.Add(1)
	key := "k" + strconv.FormatInt(id, 10)
	return &comet.ConnectReply{UserID: id, Key: key, Room: "live://" + strconv.FormatInt(id%100, 10),
		Body: []byte(`{"user_id":` + strconv.FormatInt(id, 10) + `,"key":"` + key + `"}`)}, nil
}
func (l *logic) Disconnect(context.Context, string, int64, string, string) error { return nil }
func (l *logic) Heartbeat(context.Context, string, int64, string, string) error  { return nil }
func (l *logic) RoomJoined(context.Context, string, string) error                { return nil }
func (l *logic) RenewOnline(context.Context, *comet.OnlineReport) (map[string]int32, error) {
	return nil, nil
}
func (l *logic) Receive(context.Context, *comet.ReceiveRequest) (*protocol.Packet, error) {
	return nil, nil
}

func rssKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		log.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb
		}
	}
	log.Fatal("no VmRSS")
	return 0
}

func settle() int64 {
	for range 3 {
		runtime.GC()
		debug.FreeOSMemory()
		time.Sleep(200 * time.Millisecond)
	}
	return rssKB()
}

var (
	memProfile string
	heartbeats int
)

func runServer(n int, ws bool) {
	cfg := comet.DefaultConfig()
	cfg.TCPAddr, cfg.WSAddr = "127.0.0.1:0", ""
	if ws {
		cfg.TCPAddr, cfg.WSAddr = "", "127.0.0.1:0"
	}
	cfg.HandshakeTimeout = time.Minute
	cfg.Heartbeat = 10 * time.Minute
	s, err := comet.New(cfg, &logic{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Start(); err != nil {
		log.Fatal(err)
	}
	addr := s.TCPAddr()
	if ws {
		addr = s.WSAddr()
	}
	// Warm up: one connection, so that pollers and pools exist before the
	// baseline.
	warm := exec.Command(os.Args[0], "-client", addr.String(), "-n", "1", "-ws="+strconv.FormatBool(ws))
	warmIn, _ := warm.StdinPipe()
	warm.Stderr = os.Stderr
	if err := warm.Start(); err != nil {
		log.Fatal(err)
	}
	waitConns(s, 1)
	warmIn.Close()
	_ = warm.Wait()
	waitConns(s, 0)

	before := settle()
	g0 := runtime.NumGoroutine()
	cmd := exec.Command(os.Args[0], "-client", addr.String(), "-n", strconv.Itoa(n), "-ws="+strconv.FormatBool(ws), "-heartbeats", strconv.Itoa(heartbeats))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	waitConns(s, n)
	elapsed := time.Since(start)
	// The client tells (one line on stdout) when its heartbeats are done.
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		log.Fatal(err)
	}
	time.Sleep(2 * time.Second) // idle
	after := settle()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if memProfile != "" {
		f, err := os.Create(memProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			log.Fatal(err)
		}
		f.Close()
	}
	st := s.Stats()
	fmt.Printf("transport=%s conns=%d rooms=%d heartbeats/conn=%d connect+auth=%v\n", map[bool]string{false: "tcp", true: "ws"}[ws], st.Conns, st.Rooms, heartbeats, elapsed.Round(time.Millisecond))
	fmt.Printf("VmRSS before=%d KiB after=%d KiB  => %.0f bytes per idle authenticated connection\n",
		before, after, float64(after-before)*1024/float64(n))
	fmt.Printf("goroutines before=%d after=%d; heap in use %d KiB (%.0f B/conn incl. baseline)\n",
		g0, runtime.NumGoroutine(), ms.HeapInuse/1024, float64(ms.HeapInuse)/float64(n))
	stdin.Close()
	_ = cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
}

func waitConns(s *comet.Server, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for s.Stats().Conns != n || s.Stats().Pending != 0 {
		if time.Now().After(deadline) {
			log.Fatalf("timed out: %+v, want %d conns", s.Stats(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runClient(addr string, n int, ws bool) {
	conns := make([]net.Conn, 0, n)
	brs := make([]*bufio.Reader, 0, n)
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			log.Fatalf("dial %d: %v", i, err)
		}
		br := bufio.NewReaderSize(c, 512)
		if ws {
			handshake(c, br, addr)
		}
		auth := protocol.Encode(protocol.Packet{Ver: 1, Op: protocol.OpAuth, Seq: 1, Body: authBody})
		if ws {
			auth = frame(auth)
		}
		if _, err := c.Write(auth); err != nil {
			log.Fatal(err)
		}
		readReply(br, ws, protocol.OpAuthReply)
		conns = append(conns, c)
		brs = append(brs, br)
	}
	hb := protocol.Encode(protocol.Packet{Ver: 1, Op: protocol.OpHeartbeat, Seq: 2})
	if ws {
		hb = frame(hb)
	}
	for range heartbeats {
		for i, c := range conns {
			if _, err := c.Write(hb); err != nil {
				log.Fatal(err)
			}
			readReply(brs[i], ws, protocol.OpHeartbeatReply)
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // idle until the server is done
	for _, c := range conns {
		c.Close()
	}
}

// authBody is the size of a real AuthReq: a JWT of about 300 bytes, a
// device key, platform and accepts.
var authBody = []byte(`{"token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.` + strings.Repeat("x", 220) +
	`.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c","key":"9f1c2e7a-3b4d-4c5e-8f60-7a8b9c0d1e2f","platform":"android","accepts":[1000,1001]}`)

func handshake(c net.Conn, br *bufio.Reader, host string) {
	var k [16]byte
	_, _ = rand.Read(k[:])
	fmt.Fprintf(c, "GET /sub HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		host, base64.StdEncoding.EncodeToString(k[:]))
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		if l == "\r\n" {
			return
		}
	}
}

func frame(p []byte) []byte {
	b := []byte{0x82, 0x80 | 126, byte(len(p) >> 8), byte(len(p)), 1, 2, 3, 4}
	for i, c := range p {
		b = append(b, c^b[4+i%4])
	}
	return b
}

func readReply(br *bufio.Reader, ws bool, want int32) {
	if ws {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			log.Fatal(err)
		}
		if h[1]&0x7f >= 126 {
			log.Fatal("unexpected large frame")
		}
	}
	var h [16]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		log.Fatal(err)
	}
	if op := int32(binary.BigEndian.Uint32(h[8:12])); op != want {
		log.Fatalf("op %d", op)
	}
	if _, err := br.Discard(int(binary.BigEndian.Uint32(h[0:4])) - 16); err != nil {
		log.Fatal(err)
	}
}

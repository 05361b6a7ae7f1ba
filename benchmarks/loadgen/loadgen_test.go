package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last: %s)", what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func userIDs(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	return ids
}

func payload(seq int64) []byte {
	b := make([]byte, 64)
	PutPayload(b, time.Now().UnixNano(), seq)
	return b
}

func TestPoolAgainstFakeComet(t *testing.T) {
	for _, transport := range []string{TransportTCP, TransportWS} {
		t.Run(transport, func(t *testing.T) {
			srv := newFakeComet(t, transport == TransportWS)
			ctx := context.Background()
			pool, err := NewPool(ctx, 2, InProcessSpawner(nil))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := pool.Close(context.Background()); err != nil {
					t.Errorf("pool close: %v", err)
				}
			})
			const n = 30
			var progressed []Progress
			var pmu sync.Mutex
			st, err := pool.Connect(ctx, ConnectSpec{
				Addr: srv.addr(), Transport: transport, Secret: testSecret, UserIDs: userIDs(n),
				Room: "live://bench", Accepts: []int32{1000}, Rate: 0,
				Heartbeat: 100 * time.Millisecond,
			}, 5*time.Millisecond, func(p Progress) {
				pmu.Lock()
				progressed = append(progressed, p)
				pmu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			if st.Authed != n || st.Failed != 0 || st.Open != n || st.Workers != 2 {
				t.Fatalf("connect stats: authed %d failed %d open %d workers %d errors %v", st.Authed, st.Failed, st.Open, st.Workers, st.Errors)
			}
			if st.HandshakeLatency.Count != n {
				t.Fatalf("handshake histogram has %d values, want %d", st.HandshakeLatency.Count, n)
			}
			pmu.Lock()
			last := progressed[len(progressed)-1]
			pmu.Unlock()
			if last.Authed != n || last.Target != n {
				t.Fatalf("final progress %+v", last)
			}

			// Pushes: 3 single packets and a batch of 2, plus a push to
			// another room that must not count.
			if got := srv.push("live://bench", 1000, false, payload(1), payload(2), payload(3)); got != n {
				t.Fatalf("fake server has %d room members, want %d", got, n)
			}
			srv.push("live://bench", 1000, true, payload(4), payload(5))
			srv.push("live://other", 1000, false, payload(6))
			var s Stats
			waitFor(t, "deliveries", 10*time.Second, func() (bool, string) {
				s, err = pool.Stats(ctx, false)
				return err == nil && s.Delivered >= 5*n, fmt.Sprintf("%d delivered, err %v", s.Delivered, err)
			})
			if s.Delivered != 5*n || s.Latency.Count != 5*n || s.Reordered != 0 || s.Duplicates != 0 {
				t.Fatalf("delivered %d latency count %d reordered %d duplicates %d, want %d, %d, 0, 0", s.Delivered, s.Latency.Count, s.Reordered, s.Duplicates, 5*n, 5*n)
			}
			if s.FirstRecvUnixNano == 0 || s.LastRecvUnixNano < s.FirstRecvUnixNano {
				t.Fatalf("receive times first %d last %d", s.FirstRecvUnixNano, s.LastRecvUnixNano)
			}
			// A repeated sequence number is a duplicate; a skipped one
			// arriving late is reordered.
			srv.push("live://bench", 1000, false, payload(5), payload(7), payload(6))
			waitFor(t, "duplicate", 10*time.Second, func() (bool, string) {
				s, err = pool.Stats(ctx, false)
				return err == nil && s.Duplicates == n && s.Reordered == n, fmt.Sprintf("%d duplicates %d reordered", s.Duplicates, s.Reordered)
			})

			// Reset zeroes the delivery counters, not the connection ones.
			if _, err := pool.Stats(ctx, true); err != nil {
				t.Fatal(err)
			}
			s, err = pool.Stats(ctx, false)
			if err != nil || s.Delivered != 0 || s.Latency.Count != 0 || s.Open != n {
				t.Fatalf("after reset: delivered %d latency %d open %d err %v", s.Delivered, s.Latency.Count, s.Open, err)
			}

			// Heartbeats flow at the requested interval and are answered.
			waitFor(t, "heartbeat replies", 10*time.Second, func() (bool, string) {
				s, err = pool.Stats(ctx, false)
				return err == nil && s.HeartbeatReplies >= 2*n, fmt.Sprintf("%d sent %d replies", s.HeartbeatsSent, s.HeartbeatReplies)
			})

			// The server cuts everyone with Op 6: counted by code, and as
			// closed by the server.
			srv.disconnectAll("slow_consumer")
			waitFor(t, "disconnects", 10*time.Second, func() (bool, string) {
				s, err = pool.Stats(ctx, false)
				return err == nil && s.Closed == n, fmt.Sprintf("closed %d open %d disc %v", s.Closed, s.Open, s.Disconnects)
			})
			if s.Disconnects["slow_consumer"] != n || s.Open != 0 {
				t.Fatalf("disconnects %v open %d", s.Disconnects, s.Open)
			}
			if _, err := pool.CloseConns(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCloseConnsIsNotAServerClose(t *testing.T) {
	srv := newFakeComet(t, false)
	w := NewWorker(0, nil)
	if err := w.Connect(context.Background(), ConnectSpec{Addr: srv.addr(), Secret: testSecret, UserIDs: userIDs(10), Rate: 1000}, nil); err != nil {
		t.Fatal(err)
	}
	w.CloseConns()
	s := w.Stats(false)
	if s.Authed != 10 || s.Open != 0 || s.Closed != 0 {
		t.Fatalf("authed %d open %d closed %d errors %v", s.Authed, s.Open, s.Closed, s.Errors)
	}
	waitFor(t, "server side closes", 10*time.Second, func() (bool, string) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.conns) == 0, fmt.Sprint(len(srv.conns), " open")
	})
}

func TestConnectFailures(t *testing.T) {
	srv := newFakeComet(t, false)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	tests := []struct {
		name    string
		spec    ConnectSpec
		wantErr string // reason counted for every connection
		connErr bool   // Connect itself fails
	}{
		{"wrong secret", ConnectSpec{Addr: srv.addr(), Secret: strings.Repeat("x", 40)}, "auth refused: unauthorized", false},
		{"nothing listening", ConnectSpec{Addr: deadAddr, Secret: testSecret}, "dial: connection refused", false},
		{"short secret", ConnectSpec{Addr: srv.addr(), Secret: "short"}, "", true},
		{"bad transport", ConnectSpec{Addr: srv.addr(), Secret: testSecret, Transport: "udp"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWorker(0, nil)
			defer w.CloseConns()
			tt.spec.UserIDs = userIDs(5)
			err := w.Connect(context.Background(), tt.spec, nil)
			if tt.connErr {
				if err == nil {
					t.Fatal("Connect succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := w.Stats(false)
			if s.Failed != 5 || s.Authed != 0 || s.Errors[tt.wantErr] != 5 {
				t.Fatalf("failed %d authed %d errors %v, want 5 x %q", s.Failed, s.Authed, s.Errors, tt.wantErr)
			}
		})
	}
}

func TestPush(t *testing.T) {
	var mu sync.Mutex
	var seqs []int64
	var queries []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, seq, ok := ParsePayload(b)
		mu.Lock()
		queries = append(queries, r.URL.Path+"?"+r.URL.RawQuery)
		if ok && len(b) == 100 {
			seqs = append(seqs, seq)
		}
		mu.Unlock()
		if seq == 13 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, `{"code":0,"message":""}`)
	}))
	defer hs.Close()
	hc := NewPushClient(4)
	res, err := Push(context.Background(), hc, PushSpec{
		HTTPAddr: strings.TrimPrefix(hs.URL, "http://"), Op: 1000, RoomType: "live", Room: "bench",
		Rate: 200, Duration: 100 * time.Millisecond, PayloadSize: 100, Concurrency: 4, FirstSeq: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 19 || res.Errors != 1 || res.ErrorKind["http 503"] != 1 || res.NextSeq != 30 {
		t.Fatalf("sent %d errors %d %v next %d", res.Sent, res.Errors, res.ErrorKind, res.NextSeq)
	}
	if res.HTTP.Count() != 19 {
		t.Fatalf("http histogram count %d", res.HTTP.Count())
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != int64(10+i) {
			t.Fatalf("sequence numbers %v, want 10..29", seqs)
		}
	}
	if queries[0] != "/goim/push/room?operation=1000&room=bench&type=live" {
		t.Fatalf("query %q", queries[0])
	}
	if _, err := Push(context.Background(), hc, PushSpec{HTTPAddr: "x", Rate: 0, Duration: time.Second}); err == nil {
		t.Fatal("zero rate accepted")
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "dial: connection refused"},
		{fmt.Errorf("auth read: %w", io.EOF), "auth read: eof"},
		{fmt.Errorf("auth read: %w", os.ErrDeadlineExceeded), "auth read: timeout"},
		{fmt.Errorf("%w: slow_consumer", errRefused), "auth refused: slow_consumer"},
		{nil, "eof"},
		{&net.OpError{Op: "read", Net: "tcp", Source: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}, Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "read: connection reset by peer"},
		{errors.New("weird: thing happened"), "weird: thing happened"},
		{net.ErrClosed, "closed"},
	}
	for _, tt := range tests {
		if got := reason(tt.err); got != tt.want {
			t.Errorf("reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, tt := range []struct{ n, parts int }{{10, 3}, {3, 5}, {15000, 2}, {0, 2}} {
		parts := Split(userIDs(tt.n), tt.parts)
		var all []int64
		for _, p := range parts {
			if len(p) < tt.n/tt.parts || len(p) > tt.n/tt.parts+1 {
				t.Fatalf("Split(%d, %d): part of %d", tt.n, tt.parts, len(p))
			}
			all = append(all, p...)
		}
		if !slices.Equal(all, userIDs(tt.n)) {
			t.Fatalf("Split(%d, %d) lost or reordered ids", tt.n, tt.parts)
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	b := make([]byte, PayloadMin)
	PutPayload(b, 1234567890123, 42)
	ts, seq, ok := ParsePayload(b)
	if !ok || ts != 1234567890123 || seq != 42 {
		t.Fatalf("got %d %d %v", ts, seq, ok)
	}
	if _, _, ok := ParsePayload(b[:15]); ok {
		t.Fatal("short payload accepted")
	}
}

func TestProcStats(t *testing.T) {
	rss, err := ReadRSS(0)
	if err != nil || rss <= 0 {
		t.Fatalf("ReadRSS(self) = %d, %v", rss, err)
	}
	if _, err := ReadCPUTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRSS(1 << 30); err == nil {
		t.Fatal("RSS of a missing process")
	}
}

func TestSeqWindow(t *testing.T) {
	tests := []struct {
		name string
		seqs []int64
		want []int
	}{
		{"in order", []int64{1, 2, 3, 5}, []int{seqInOrder, seqInOrder, seqInOrder, seqInOrder}},
		{"reordered", []int64{1, 3, 2, 4}, []int{seqInOrder, seqInOrder, seqReordered, seqInOrder}},
		{"duplicates", []int64{1, 2, 2, 1, 3, 2}, []int{seqInOrder, seqInOrder, seqDuplicate, seqDuplicate, seqInOrder, seqDuplicate}},
		{"jump clears", []int64{5, 5000, 5, 4999, 5000, 3977, 3976}, []int{seqInOrder, seqInOrder, seqTooOld, seqReordered, seqDuplicate, seqReordered, seqTooOld}},
		{"wrap", []int64{1, 1025, 1, 1026, 2}, []int{seqInOrder, seqInOrder, seqTooOld, seqInOrder, seqTooOld}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w seqWindow
			for i, s := range tt.seqs {
				if got := w.add(s); got != tt.want[i] {
					t.Fatalf("add(%d) #%d = %d, want %d", s, i, got, tt.want[i])
				}
			}
		})
	}
}

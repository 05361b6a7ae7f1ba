package loadgen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func newTestPool(t *testing.T, workers int) *Pool {
	t.Helper()
	pool, err := NewPool(context.Background(), workers, InProcessSpawner(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Close(context.Background()); err != nil {
			t.Errorf("pool close: %v", err)
		}
	})
	return pool
}

func TestAddrLists(t *testing.T) {
	if got := SplitAddrs(" a:1, ,b:2,c:3 "); !slices.Equal(got, []string{"a:1", "b:2", "c:3"}) {
		t.Errorf("SplitAddrs = %q", got)
	}
	if got := SplitAddrs(""); got != nil {
		t.Errorf("SplitAddrs(\"\") = %q", got)
	}
	for n, want := range map[int]string{0: "a,b,c", 1: "b,c,a", 2: "c,a,b", 3: "a,b,c", 7: "b,c,a"} {
		if got := rotateAddrs("a,b,c", n); got != want {
			t.Errorf("rotateAddrs(a,b,c, %d) = %q, want %q", n, got, want)
		}
	}
	if got := rotateAddrs("a", 5); got != "a" {
		t.Errorf("rotateAddrs(a, 5) = %q", got)
	}
}

// Connections are spread round robin over several comet addresses, over
// all workers: user number i (from 0) goes to address i mod k.
func TestConnectSpreadsOverAddrs(t *testing.T) {
	for _, tc := range []struct {
		transport string
		comets    int
		workers   int
		n         int
	}{
		{TransportTCP, 3, 2, 31},
		{TransportWS, 2, 3, 20},
	} {
		t.Run(fmt.Sprintf("%s-%dcomets-%dworkers", tc.transport, tc.comets, tc.workers), func(t *testing.T) {
			var comets []*fakeComet
			var addrs []string
			for range tc.comets {
				c := newFakeComet(t, tc.transport == TransportWS)
				comets = append(comets, c)
				addrs = append(addrs, c.addr())
			}
			pool := newTestPool(t, tc.workers)
			ids := userIDs(tc.n)
			st, err := pool.Connect(context.Background(), ConnectSpec{
				Addr: JoinAddrs(addrs), Transport: tc.transport, Secret: testSecret, UserIDs: ids, Rate: 0,
			}, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.Authed != int64(tc.n) || st.Open != int64(tc.n) {
				t.Fatalf("authed %d open %d, want %d (errors %v)", st.Authed, st.Open, tc.n, st.Errors)
			}
			for j, c := range comets {
				var want []int64
				for i, id := range ids {
					if i%tc.comets == j {
						want = append(want, id)
					}
				}
				got, open := c.users()
				if !slices.Equal(got, want) || open != len(want) {
					t.Errorf("comet %d got users %v (%d open), want %v", j, got, open, want)
				}
			}
			if _, err := pool.CloseConns(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRampOffset(t *testing.T) {
	for _, tc := range []struct {
		i    int
		rate float64
		want time.Duration
	}{
		{0, 100, 0},
		{1, 100, 10 * time.Millisecond},
		{250, 1000, 250 * time.Millisecond},
		{3000, 3000, time.Second},
		{7, 0, 0},
	} {
		if got := RampOffset(tc.i, tc.rate); got != tc.want {
			t.Errorf("RampOffset(%d, %g) = %v, want %v", tc.i, tc.rate, got, tc.want)
		}
	}
}

// A paced ramp never starts connection i before its due time: the fake
// comet sees user i authenticate no earlier than start + i/rate (a lower
// bound: timers do not fire early).
func TestConnectRamp(t *testing.T) {
	srv := newFakeComet(t, false)
	w := NewWorker(0, nil)
	defer w.CloseConns()
	const n, rate = 20, 200.0
	var mu sync.Mutex
	var reports []Progress
	start := time.Now()
	if err := w.Connect(context.Background(), ConnectSpec{Addr: srv.addr(), Secret: testSecret, UserIDs: userIDs(n), Rate: rate}, func(p Progress) {
		mu.Lock()
		reports = append(reports, p)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(false); s.Authed != n || s.Failed != 0 {
		t.Fatalf("authed %d failed %d errors %v", s.Authed, s.Failed, s.Errors)
	}
	srv.mu.Lock()
	for k, uid := range srv.authed {
		due := start.Add(RampOffset(int(uid-1), rate))
		if srv.authedAt[k].Before(due) {
			t.Errorf("user %d authenticated %v before its ramp slot", uid, due.Sub(srv.authedAt[k]))
		}
	}
	srv.mu.Unlock()
	// Progress reports only grow and the last one is complete.
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(reports); i++ {
		if reports[i].Attempted < reports[i-1].Attempted || reports[i].Authed < reports[i-1].Authed {
			t.Fatalf("progress went back: %+v then %+v", reports[i-1], reports[i])
		}
	}
	if last := reports[len(reports)-1]; last.Authed != n || last.Target != n {
		t.Fatalf("last progress %+v", last)
	}
}

// An interrupted ramp: the workers stop connecting, Connect returns the
// partial stats with an error wrapping context.Canceled, and the workers
// still serve stats and close their connections afterwards.
func TestConnectInterrupted(t *testing.T) {
	srv := newFakeComet(t, false)
	pool := newTestPool(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 400 // 20 s at 20/s: the ramp cannot end by itself during the test
	st, err := pool.Connect(ctx, ConnectSpec{Addr: srv.addr(), Secret: testSecret, UserIDs: userIDs(n), Rate: 20, Heartbeat: time.Hour},
		5*time.Millisecond, func(p Progress) {
			if p.Authed >= 4 {
				cancel() // the "SIGINT"
			}
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect error %v, want context.Canceled", err)
	}
	if st.Authed < 4 || st.Authed >= n || st.Open != st.Authed || st.Workers != 2 {
		t.Fatalf("partial stats: authed %d open %d workers %d (errors %v)", st.Authed, st.Open, st.Workers, st.Errors)
	}
	// The workers are alive and hold what was connected.
	later, err := pool.Stats(context.Background(), false)
	if err != nil || later.Open != st.Authed || later.Attempted != st.Attempted {
		t.Fatalf("stats after the interrupt: open %d attempted %d (want %d, %d), err %v", later.Open, later.Attempted, st.Authed, st.Attempted, err)
	}
	// A handshake aborted after the server's AuthReply left is closed by
	// the client: the server's count settles on the authenticated ones.
	waitFor(t, "the fake comet to hold the authenticated connections", 10*time.Second, func() (bool, string) {
		_, open := srv.users()
		return open == int(st.Authed), fmt.Sprintf("%d open, want %d", open, st.Authed)
	})
	if _, err := pool.CloseConns(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "server-side closes", 10*time.Second, func() (bool, string) {
		_, open := srv.users()
		return open == 0, fmt.Sprint(open, " open")
	})
}

package discovery_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/goimdev/goim/internal/discovery"
	"github.com/goimdev/goim/internal/discovery/embedetcd"
)

func names(list []discovery.Instance) []string {
	out := make([]string, len(list))
	for i, in := range list {
		out[i] = in.Name
	}
	return out
}

// waitList reads lists from ch until one has exactly the instances named
// want (in order), and returns it.
func waitList(t *testing.T, ch <-chan []discovery.Instance, want ...string) []discovery.Instance {
	t.Helper()
	timeout := time.After(20 * time.Second)
	var last []discovery.Instance
	for {
		select {
		case list, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed waiting for %v (last %v)", want, names(last))
			}
			last = list
			if slices.Equal(names(list), want) {
				return list
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %v (last %v)", want, names(last))
		}
	}
}

func waitClosed(t *testing.T, ch <-chan []discovery.Instance) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("watch channel not closed")
		}
	}
}

func TestStatic(t *testing.T) {
	s := discovery.NewStatic(map[string][]discovery.Instance{
		"logic": {{Name: "l2", Addr: "10.0.0.2:3119"}, {Name: "l1", Addr: "10.0.0.1:3119", Meta: map[string]string{"weight": "10"}}},
	})
	dereg, err := s.Register(t.Context(), discovery.Instance{Service: "logic", Name: "l3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := dereg(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := s.Watch(ctx, "logic")
	if err != nil {
		t.Fatal(err)
	}
	list := waitList(t, ch, "l1", "l2")
	if list[0].Service != "logic" || list[0].Addr != "10.0.0.1:3119" || list[0].Meta["weight"] != "10" {
		t.Fatalf("instance = %+v", list[0])
	}
	cancel()
	waitClosed(t, ch)

	empty, err := s.Watch(t.Context(), "comet")
	if err != nil {
		t.Fatal(err)
	}
	waitList(t, empty)
}

func newEtcd(t *testing.T, endpoints []string, ttl time.Duration) *discovery.Etcd {
	t.Helper()
	e, err := discovery.NewEtcd(t.Context(), discovery.EtcdConfig{
		Endpoints: endpoints, Prefix: "/test/", TTL: ttl, RetryInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestEtcdRegisterWatch(t *testing.T) {
	endpoints := embedetcd.StartT(t)
	reg := newEtcd(t, endpoints, 10*time.Second)
	watcher := newEtcd(t, endpoints, 10*time.Second)
	ctx := t.Context()

	ch, err := watcher.Watch(ctx, "comet")
	if err != nil {
		t.Fatal(err)
	}
	waitList(t, ch) // the current list: empty

	c1 := discovery.Instance{Service: "comet", Name: "c1", Addr: "127.0.0.1:1", Meta: map[string]string{"tcp": "127.0.0.1:3101"}}
	c2 := discovery.Instance{Service: "comet", Name: "c2", Addr: "127.0.0.1:2"}
	dereg1, err := reg.Register(ctx, c1)
	if err != nil {
		t.Fatal(err)
	}
	list := waitList(t, ch, "c1")
	if fmt.Sprint(list[0]) != fmt.Sprint(c1) {
		t.Fatalf("watched %+v, want %+v", list[0], c1)
	}
	dereg2, err := reg.Register(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	waitList(t, ch, "c1", "c2")

	// Another service is not mixed in.
	if _, err := reg.Register(ctx, discovery.Instance{Service: "logic", Name: "l1", Addr: "127.0.0.1:3"}); err != nil {
		t.Fatal(err)
	}
	// A new watcher gets the current list first.
	wctx, cancel := context.WithCancel(ctx)
	ch2, err := watcher.Watch(wctx, "comet")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(<-ch2); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("first list of a new watch = %v", got)
	}

	if err := dereg1(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dereg1(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	waitList(t, ch, "c2")
	waitList(t, ch2, "c2")
	cancel()
	waitClosed(t, ch2)

	if err := dereg2(ctx); err != nil {
		t.Fatal(err)
	}
	waitList(t, ch)
}

// TestEtcdLeaseLost: a registration whose lease is revoked behind its back
// (or expired while etcd was unreachable) registers again.
func TestEtcdLeaseLost(t *testing.T) {
	endpoints := embedetcd.StartT(t)
	reg := newEtcd(t, endpoints, 10*time.Second)
	ctx := t.Context()
	ch, err := newEtcd(t, endpoints, 10*time.Second).Watch(ctx, "logic")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(ctx, discovery.Instance{Service: "logic", Name: "l1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	waitList(t, ch, "l1")

	raw, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	resp, err := raw.Get(ctx, "/test/logic/l1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("registration not found: %v %v", resp, err)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	if _, err := raw.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	waitList(t, ch) // the key went with its lease
	waitList(t, ch, "l1")
	resp, err = raw.Get(ctx, "/test/logic/l1")
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) == lease {
		t.Fatalf("registration not renewed under a new lease: %v %v", resp, err)
	}
}

// TestEtcdCrashExpires: a process that stops without deregistering (its
// keepalives stop) disappears once its lease expires.
func TestEtcdCrashExpires(t *testing.T) {
	endpoints := embedetcd.StartT(t)
	ctx := t.Context()
	ch, err := newEtcd(t, endpoints, 10*time.Second).Watch(ctx, "comet")
	if err != nil {
		t.Fatal(err)
	}
	crashing := newEtcd(t, endpoints, time.Second)
	if _, err := crashing.Register(ctx, discovery.Instance{Service: "comet", Name: "c1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	waitList(t, ch, "c1")
	if err := crashing.Close(); err != nil {
		t.Fatal(err)
	}
	waitList(t, ch)
}

func TestEtcdValidation(t *testing.T) {
	if _, err := discovery.NewEtcd(t.Context(), discovery.EtcdConfig{}); err == nil {
		t.Error("NewEtcd without endpoints: no error")
	}
	endpoints := embedetcd.StartT(t)
	e := newEtcd(t, endpoints, 0)
	for _, in := range []discovery.Instance{{Name: "x"}, {Service: "comet"}, {Service: "a/b", Name: "x"}} {
		if _, err := e.Register(t.Context(), in); err == nil {
			t.Errorf("Register(%+v): no error", in)
		}
	}
	// Close ends the watches.
	ch, err := e.Watch(context.Background(), "comet")
	if err != nil {
		t.Fatal(err)
	}
	waitList(t, ch)
	e.Close()
	waitClosed(t, ch)
}

// TestEtcdRestart: etcd stops for longer than the TTL and comes back (same
// data, same address): the watch resumes and the registration, whose lease
// expired meanwhile, is made again. It takes ~20 s (etcd waits 7 s for
// open streams when it stops; the clients back off while it is down).
func TestEtcdRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: etcd restart")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	dir := t.TempDir()
	endpoints, stop, err := embedetcd.Start(dir, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() }) // after the clients closed (LIFO): a stop with open streams waits 7 s
	ctx := t.Context()
	ch, err := newEtcd(t, endpoints, 10*time.Second).Watch(ctx, "comet")
	if err != nil {
		t.Fatal(err)
	}
	reg := newEtcd(t, endpoints, time.Second)
	if _, err := reg.Register(ctx, discovery.Instance{Service: "comet", Name: "c1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	waitList(t, ch, "c1")

	raw, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	resp, err := raw.Get(ctx, "/test/comet/c1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("registration not found: %v %v", resp, err)
	}
	oldLease := resp.Kvs[0].Lease
	stop()
	// Down for longer than the lease: the registrar's keepalive deadline
	// passes (it then retries granting until etcd answers).
	time.Sleep(3 * time.Second)
	endpoints2, stop2, err := embedetcd.Start(dir, url)
	if err != nil {
		t.Fatal(err)
	}
	stop = stop2
	if !slices.Equal(endpoints, endpoints2) {
		t.Fatalf("endpoints changed: %v -> %v", endpoints, endpoints2)
	}
	// The registrar's keepalive deadline passed while etcd was down: it
	// registers again under a new lease.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := raw.Get(ctx, "/test/comet/c1")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 1 && resp.Kvs[0].Lease != oldLease {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not registered again after the restart: %v", resp.Kvs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The watch carried on through the restart (the client resumes it):
	// it sees a new instance.
	if _, err := reg.Register(ctx, discovery.Instance{Service: "comet", Name: "c2", Addr: "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	waitList(t, ch, "c1", "c2")
}

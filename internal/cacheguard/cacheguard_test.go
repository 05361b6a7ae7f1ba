package cacheguard

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

type fake struct {
	mu       sync.Mutex
	now      time.Time
	fail     bool
	flushed  []string
	errs     int
	lostKeys int
}

func newGuard(f *fake, max int) *Guard[string] {
	return New(Config[string]{
		Name: "test", RetryAfter: time.Second, MaxPending: max, Timeout: time.Second,
		Flush: func(_ context.Context, keys []string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.fail {
				return errors.New("down")
			}
			f.flushed = append(f.flushed, keys...)
			return nil
		},
		OnError: func() { f.mu.Lock(); f.errs++; f.mu.Unlock() },
		OnLost:  func(n int) { f.mu.Lock(); f.lostKeys += n; f.mu.Unlock() },
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:     func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now },
	})
}

func (f *fake) advance(d time.Duration) { f.mu.Lock(); f.now = f.now.Add(d); f.mu.Unlock() }
func (f *fake) setFail(v bool)          { f.mu.Lock(); f.fail = v; f.mu.Unlock() }

func TestBypassQueueFlush(t *testing.T) {
	f := &fake{now: time.Unix(1000, 0)}
	g := newGuard(f, 2)
	if !g.Usable() {
		t.Fatal("a new guard bypasses its backend")
	}
	if queued, _ := g.QueueIfDown("x"); queued {
		t.Fatal("queued while the backend is up")
	}
	g.Failed("get", errors.New("boom"))
	if g.Usable() {
		t.Fatal("usable right after a failure")
	}
	if queued, lost := g.QueueIfDown("a", "b", "c"); !queued || lost != 1 {
		t.Fatalf("QueueIfDown = %v, %d; want queued with 1 lost (bound 2)", queued, lost)
	}
	f.advance(2 * time.Second)
	f.setFail(true)
	if g.Usable() {
		t.Fatal("usable although the flush failed")
	}
	f.setFail(false)
	f.advance(2 * time.Second)
	if !g.Usable() {
		t.Fatal("not usable after a successful flush")
	}
	slices.Sort(f.flushed)
	if !slices.Equal(f.flushed, []string{"a", "b"}) || f.errs != 2 || f.lostKeys != 1 {
		t.Fatalf("flushed %v, errors %d, lost %d", f.flushed, f.errs, f.lostKeys)
	}
}

// Queue while the backend is up bypasses it until the keys are flushed.
func TestQueueWhileUp(t *testing.T) {
	f := &fake{now: time.Unix(1000, 0)}
	g := newGuard(f, 10)
	if lost := g.Queue("k"); lost != 0 {
		t.Fatal(lost)
	}
	if !g.Usable() || !slices.Equal(f.flushed, []string{"k"}) {
		t.Fatalf("the next use must flush first: flushed %v", f.flushed)
	}
}

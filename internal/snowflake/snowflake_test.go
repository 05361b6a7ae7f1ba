package snowflake

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewNodeRange(t *testing.T) {
	tests := []struct {
		node int64
		ok   bool
	}{
		{-1, false}, {0, true}, {1, true}, {MaxNode, true}, {MaxNode + 1, false},
	}
	for _, tt := range tests {
		g, err := New(tt.node)
		if (err == nil) != tt.ok {
			t.Errorf("New(%d) error = %v, want ok %v", tt.node, err, tt.ok)
			continue
		}
		if err == nil && g.Node() != tt.node {
			t.Errorf("Node() = %d, want %d", g.Node(), tt.node)
		}
	}
}

func TestLayout(t *testing.T) {
	ms := int64(123_456_789)
	g, err := newGenerator(77, func() int64 { return ms })
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(5) {
		id := g.Next()
		if got := id >> (NodeBits + SeqBits); got != ms {
			t.Fatalf("id %d: time %d, want %d", i, got, ms)
		}
		if NodeOf(id) != 77 {
			t.Fatalf("id %d: node %d, want 77", i, NodeOf(id))
		}
		if seq := id & maxSeq; seq != i {
			t.Fatalf("id %d: seq %d, want %d", i, seq, i)
		}
	}
	if got, want := Time(g.Next()), Epoch.Add(time.Duration(ms)*time.Millisecond); !got.Equal(want) {
		t.Fatalf("Time = %v, want %v", got, want)
	}
}

func TestRealClock(t *testing.T) {
	g, err := New(3)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	got := Time(g.Next())
	if got.Before(before) || got.After(time.Now().Add(MaxBorrow)) {
		t.Fatalf("Time(id) = %v, not now", got)
	}
}

// A clock going backwards, standing still, and a burst beyond 4096 ids in
// one millisecond: ids keep increasing and never repeat.
func TestMonotonic(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1000)
	g, err := newGenerator(1, clock.Load)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		clock int64
		n     int
	}{
		{"start", 1000, 10},
		{"overflow borrows", 1000, 3 * (maxSeq + 1)},
		{"backwards", 500, 100},
		{"forward again", 1002, 10},
		{"far forward", 50_000, 10},
	}
	last := int64(-1)
	for _, st := range steps {
		clock.Store(st.clock)
		for range st.n {
			id := g.Next()
			if id <= last {
				t.Fatalf("%s: id %d after %d", st.name, id, last)
			}
			last = id
		}
	}
	if got := last >> (NodeBits + SeqBits); got != 50_000 {
		t.Fatalf("after the clock jumped forward the id time is %d, want 50000", got)
	}
}

// Borrowing stops at MaxBorrow: Next then waits for the clock.
func TestBorrowLimitWaits(t *testing.T) {
	var clock atomic.Int64
	clock.Store(10_000)
	g, err := newGenerator(0, clock.Load)
	if err != nil {
		t.Fatal(err)
	}
	// Push the state to the borrowing limit.
	g.state.Store((10_000+maxBorrowMS)<<SeqBits | maxSeq)
	done := make(chan int64)
	go func() { done <- g.Next() }()
	select {
	case id := <-done:
		t.Fatalf("Next returned %d beyond the borrow limit", id)
	case <-time.After(20 * time.Millisecond): // negative check: it must still be waiting
	}
	clock.Store(10_002)
	id := <-done
	if got := id >> (NodeBits + SeqBits); got != 10_000+maxBorrowMS+1 {
		t.Fatalf("id time %d, want %d", got, 10_000+maxBorrowMS+1)
	}
}

func TestConcurrentUnique(t *testing.T) {
	g, err := New(5)
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 8, 20_000
	out := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]int64, per)
			for i := range ids {
				ids[i] = g.Next()
				if i > 0 && ids[i] <= ids[i-1] {
					t.Errorf("worker %d: id %d after %d", w, ids[i], ids[i-1])
					return
				}
			}
			out[w] = ids
		}()
	}
	wg.Wait()
	seen := make(map[int64]bool, workers*per)
	for _, ids := range out {
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("id %d handed out twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != workers*per {
		t.Fatalf("%d ids, want %d", len(seen), workers*per)
	}
}

func TestNextAllocs(t *testing.T) {
	g, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { g.Next() }); n != 0 {
		t.Fatalf("Next allocates %v times", n)
	}
}

func BenchmarkNext(b *testing.B) {
	g, err := New(1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		g.Next()
	}
}

func BenchmarkNextParallel(b *testing.B) {
	g, err := New(1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Next()
		}
	})
}

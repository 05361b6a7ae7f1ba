package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistIndexBounds(t *testing.T) {
	// Every bucket's bounds map back to the bucket, buckets are contiguous
	// and no bucket is wider than 1/histHalf of its lower bound.
	var prevHi int64 = -1
	for i := 0; i < histBuckets; i++ {
		lo, hi := histBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if got := histIndex(lo); got != i {
			t.Fatalf("histIndex(%d) = %d, want %d", lo, got, i)
		}
		if got := histIndex(hi); got != i {
			t.Fatalf("histIndex(%d) = %d, want %d", hi, got, i)
		}
		if lo >= histSubCount && float64(hi-lo+1) > float64(lo)/histHalf {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d of its lower bound", i, lo, hi, histHalf)
		}
		prevHi = hi
	}
	if prevHi != math.MaxInt64 {
		t.Fatalf("last bucket ends at %d, want MaxInt64", prevHi)
	}
}

func TestHistQuantiles(t *testing.T) {
	uniform := make([]int64, 100000)
	for i := range uniform {
		uniform[i] = int64(i + 1) // 1..100000
	}
	r := rand.New(rand.NewPCG(1, 2))
	lognormal := make([]int64, 50000)
	for i := range lognormal {
		lognormal[i] = int64(math.Exp(r.NormFloat64()*1.5+12)) + 1 // ~160 µs median, long tail
	}
	tests := []struct {
		name string
		data []int64
	}{
		{"small exact", []int64{5, 1, 3, 2, 4}},
		{"uniform 1..100000", uniform},
		{"lognormal", lognormal},
		{"constant", slices.Repeat([]int64{1_000_000}, 1000)},
		{"huge", []int64{math.MaxInt64, math.MaxInt64 - 1, 1 << 62}},
	}
	qs := []float64{0, 0.1, 0.5, 0.9, 0.99, 0.999, 1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHist()
			for _, v := range tt.data {
				h.Record(v)
			}
			sorted := slices.Clone(tt.data)
			slices.Sort(sorted)
			if h.Count() != uint64(len(sorted)) {
				t.Fatalf("count %d, want %d", h.Count(), len(sorted))
			}
			if h.Min() != sorted[0] || h.Max() != sorted[len(sorted)-1] {
				t.Fatalf("min/max %d/%d, want %d/%d", h.Min(), h.Max(), sorted[0], sorted[len(sorted)-1])
			}
			for _, q := range qs {
				rank := int(math.Ceil(q * float64(len(sorted))))
				want := sorted[max(rank, 1)-1]
				got := h.Quantile(q)
				// The answer is the top of the bucket holding the exact
				// value: never below it, at most one bucket width above.
				if got < want || float64(got-want) > float64(want)/histHalf+1 {
					t.Errorf("q%v = %d, want %d (within %.2f%%)", q, got, want, 100.0/histHalf)
				}
			}
		})
	}
}

func TestHistEmptyAndNegative(t *testing.T) {
	h := NewHist()
	if h.Quantile(0.5) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	h.Record(-5)
	if h.Count() != 1 || h.Max() != 0 || h.Quantile(1) != 0 {
		t.Fatalf("negative value not clamped to 0: count %d max %d", h.Count(), h.Max())
	}
	h.Reset()
	if h.Count() != 0 || h.Quantile(0.99) != 0 {
		t.Fatal("Reset left values")
	}
}

func TestHistMergeAndSnapshot(t *testing.T) {
	all, a, b := NewHist(), NewHist(), NewHist()
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		v := r.Int64N(10_000_000)
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	merged := NewHist()
	merged.Merge(a)
	merged.Merge(b)

	// The snapshot path (what workers send) must give the same histogram.
	viaSnap := NewHist()
	viaSnap.MergeSnapshot(a.Snapshot())
	viaSnap.MergeSnapshot(b.Snapshot())

	for _, h := range []*Hist{merged, viaSnap} {
		if h.Count() != all.Count() || h.Min() != all.Min() || h.Max() != all.Max() || math.Abs(h.Mean()-all.Mean()) > 1e-6*all.Mean() {
			t.Fatalf("merged totals differ: count %d/%d min %d/%d max %d/%d", h.Count(), all.Count(), h.Min(), all.Min(), h.Max(), all.Max())
		}
		for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
			if h.Quantile(q) != all.Quantile(q) {
				t.Fatalf("q%v: merged %d, direct %d", q, h.Quantile(q), all.Quantile(q))
			}
		}
	}
	if got := len(a.Snapshot().Buckets); got == 0 || got > histBuckets {
		t.Fatalf("snapshot has %d buckets", got)
	}
}

func TestHistSummary(t *testing.T) {
	h := NewHist()
	for i := 1; i <= 1000; i++ {
		h.Record(int64(i) * 1000) // 1 µs .. 1000 µs
	}
	s := h.Summary()
	if s.Count != 1000 || s.MinUS != 1 || s.MaxUS != 1000 {
		t.Fatalf("summary %+v", s)
	}
	if s.P50US < 500 || s.P50US > 505 || s.P99US < 990 || s.P99US > 1000 || s.MeanUS < 499 || s.MeanUS > 503 {
		t.Fatalf("summary percentiles off: %+v", s)
	}
}

func BenchmarkHistRecord(b *testing.B) {
	h := NewHist()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		v := int64(12345)
		for pb.Next() {
			h.Record(v)
			v = (v*7 + 13) % 50_000_000
		}
	})
}

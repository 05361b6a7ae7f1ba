package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram layout: log-linear buckets in the style of HdrHistogram. Values
// below 2^histSubBits have one bucket each; every further power of two is
// split into 2^(histSubBits-1) equal buckets, so a bucket is never wider than
// 1/2^(histSubBits-1) of its lower bound (0.8 % for histSubBits = 8).
const (
	histSubBits  = 8
	histSubCount = 1 << histSubBits // 256
	histHalf     = histSubCount / 2 // buckets per further power of two
	// histBuckets covers every non-negative int64: the largest shift is
	// 63-histSubBits (values of 2^62 and more).
	histBuckets = (63 - histSubBits + 2) * histHalf
)

// Hist is a mergeable log-linear histogram of non-negative int64 values
// (latencies in nanoseconds here). Record is safe for concurrent use, does
// not allocate and costs one atomic add (plus two loads): the count and the
// mean are derived from the buckets when asked for. The other methods must
// not run concurrently with Record if an exact snapshot is wanted (the
// counts are read atomically one by one).
type Hist struct {
	counts [histBuckets]atomic.Uint64
	min    atomic.Int64 // MaxInt64 when empty
	max    atomic.Int64
}

// NewHist returns an empty histogram.
func NewHist() *Hist {
	h := &Hist{}
	h.min.Store(math.MaxInt64)
	return h
}

// histIndex returns the bucket of v (v >= 0).
func histIndex(v int64) int {
	if v < histSubCount {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 1 // >= histSubBits
	shift := e - histSubBits + 1   // >= 1
	// v>>shift is in [histHalf, histSubCount).
	return shift*histHalf + int(v>>shift)
}

// histBounds returns the lowest and highest value that map to bucket i.
func histBounds(i int) (lo, hi int64) {
	if i < histSubCount {
		return int64(i), int64(i)
	}
	shift := i/histHalf - 1
	sub := int64(i - shift*histHalf)
	lo = sub << shift
	hi = lo + (int64(1) << shift) - 1
	if hi < lo { // the last bucket: overflow to MaxInt64
		hi = math.MaxInt64
	}
	return lo, hi
}

// Record adds one value. Negative values are recorded as 0 (a receiver whose
// clock reads earlier than the sender's on the same machine is not possible,
// but a caller may pass a raw difference).
func (h *Hist) Record(v int64) {
	h.RecordN(v, 1)
}

// RecordN adds the value v n times.
func (h *Hist) RecordN(v int64, n uint64) {
	if n == 0 {
		return
	}
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(v)].Add(n)
	for {
		cur := h.min.Load()
		if v >= cur || h.min.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Count returns the number of recorded values.
func (h *Hist) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Min returns the smallest recorded value, or 0 when empty.
func (h *Hist) Min() int64 {
	if m := h.min.Load(); m != math.MaxInt64 {
		return m
	}
	return 0
}

// Max returns the largest recorded value, or 0 when empty.
func (h *Hist) Max() int64 { return h.max.Load() }

// Mean returns the mean of the recorded values, each taken at the middle of
// its bucket (within half a bucket width: 0.4 %), or 0 when empty.
func (h *Hist) Mean() float64 {
	var n uint64
	var sum float64
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			lo, hi := histBounds(i)
			n += c
			sum += float64(c) * (float64(lo) + float64(hi)) / 2
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// Quantile returns the value at quantile q in [0, 1]: the highest value of
// the bucket holding the ceil(q*count)-th smallest value, capped at Max (so
// Quantile(1) == Max). It returns 0 when empty.
func (h *Hist) Quantile(q float64) int64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	q = math.Max(0, math.Min(1, q))
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	mx := h.max.Load()
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			_, hi := histBounds(i)
			return min(hi, mx)
		}
	}
	return mx
}

// Merge adds every value of o to h.
func (h *Hist) Merge(o *Hist) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.mergeExtremes(o.min.Load(), o.max.Load())
}

func (h *Hist) mergeExtremes(mn, mx int64) {
	for {
		cur := h.min.Load()
		if mn >= cur || h.min.CompareAndSwap(cur, mn) {
			break
		}
	}
	for {
		cur := h.max.Load()
		if mx <= cur || h.max.CompareAndSwap(cur, mx) {
			break
		}
	}
}

// Reset empties the histogram.
func (h *Hist) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.min.Store(math.MaxInt64)
	h.max.Store(0)
}

// HistSnapshot is the sparse, serialisable form of a Hist: it travels from
// workers to the driver and merges there without losing precision.
type HistSnapshot struct {
	// Buckets holds [bucket index, count] pairs of the non-empty buckets.
	Buckets [][2]uint64 `json:"buckets,omitempty"`
	Count   uint64      `json:"count"`
	Min     int64       `json:"min"`
	Max     int64       `json:"max"`
}

// Snapshot returns the sparse form of h.
func (h *Hist) Snapshot() HistSnapshot {
	s := HistSnapshot{Min: h.Min(), Max: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
			s.Count += c
		}
	}
	return s
}

// MergeSnapshot adds a snapshot's values to h. Bucket indexes out of range
// are ignored (a snapshot from a build with another layout).
func (h *Hist) MergeSnapshot(s HistSnapshot) {
	if s.Count == 0 {
		return
	}
	for _, b := range s.Buckets {
		if b[0] < histBuckets {
			h.counts[b[0]].Add(b[1])
		}
	}
	h.mergeExtremes(s.Min, s.Max)
}

// LatencySummary is a histogram of durations reduced to the figures the
// results report, in microseconds.
type LatencySummary struct {
	Count  uint64  `json:"count"`
	MinUS  float64 `json:"min_us"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
}

// Summary reduces a histogram of nanosecond durations.
func (h *Hist) Summary() LatencySummary {
	us := func(ns int64) float64 { return math.Round(float64(ns)/float64(time.Microsecond)*10) / 10 }
	return LatencySummary{
		Count:  h.Count(),
		MinUS:  us(h.Min()),
		MeanUS: us(int64(h.Mean())),
		P50US:  us(h.Quantile(0.50)),
		P90US:  us(h.Quantile(0.90)),
		P99US:  us(h.Quantile(0.99)),
		P999US: us(h.Quantile(0.999)),
		MaxUS:  us(h.Max()),
	}
}

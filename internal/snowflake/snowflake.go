// Package snowflake generates GoIM's 64-bit message ids: Twitter-style
// Snowflake ids, unique per node and increasing.
//
// Layout (most significant bit first):
//
//	1 bit    zero (ids are positive int64)
//	41 bits  milliseconds since Epoch (2024-01-01T00:00:00Z; lasts ~69 years)
//	10 bits  node id, 0..1023, unique per running generator
//	12 bits  sequence within the millisecond, 0..4095
//
// A Generator is lock-free (one atomic compare-and-swap per id) and does
// not allocate. Its clock is the wall clock at New plus Go's monotonic
// clock, so a wall-clock step (NTP) while the process runs does not move
// ids backwards. Ids stay strictly increasing even if the clock source goes
// backwards or more than 4096 ids are asked for in one millisecond: the
// generator then borrows the next milliseconds (the id's timestamp runs
// ahead of the clock) up to MaxBorrow, beyond which Next waits for the
// clock to catch up.
//
// Across restarts uniqueness relies on the wall clock not going back
// further than the downtime, and on no two live generators sharing a node
// id: nodes are assigned by configuration (or a lease).
package snowflake

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
)

// Bit widths and limits of the id fields.
const (
	TimeBits = 41
	NodeBits = 10
	SeqBits  = 12

	MaxNode = 1<<NodeBits - 1
	maxSeq  = 1<<SeqBits - 1
	maxTime = 1<<TimeBits - 1
)

// Epoch is the zero of the id timestamps: 2024-01-01T00:00:00Z.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxBorrow is how far an id's timestamp may run ahead of the clock before
// Next waits (clock stepped backwards, or a burst above 4096 ids/ms).
const MaxBorrow = time.Second

const maxBorrowMS = int64(MaxBorrow / time.Millisecond)

// Generator hands out ids for one node. The zero value is not usable: call
// New.
type Generator struct {
	// state packs the last id's (ms << SeqBits | seq); node is or'ed in
	// when the id is returned.
	state atomic.Int64
	node  int64 // already shifted into place
	now   func() int64
}

// New returns a generator for node (0..MaxNode) on the process clock.
func New(node int64) (*Generator, error) {
	start := time.Now()
	base := start.Sub(Epoch).Milliseconds()
	return newGenerator(node, func() int64 { return base + time.Since(start).Milliseconds() })
}

// newGenerator returns a generator reading the milliseconds since Epoch
// from now (tests inject clocks).
func newGenerator(node int64, now func() int64) (*Generator, error) {
	if node < 0 || node > MaxNode {
		return nil, fmt.Errorf("snowflake: node %d out of range 0..%d", node, MaxNode)
	}
	if ms := now(); ms < 0 || ms > maxTime {
		return nil, fmt.Errorf("snowflake: clock %d ms since the epoch is out of range", ms)
	}
	return &Generator{node: node << SeqBits, now: now}, nil
}

// Node returns the generator's node id.
func (g *Generator) Node() int64 { return g.node >> SeqBits }

// Next returns a new id, greater than every id this generator returned
// before.
func (g *Generator) Next() int64 {
	for spins := 0; ; spins++ {
		old := g.state.Load()
		now := g.now()
		next := old + 1 // the next seq; an overflow carries into the ms: borrowing
		if now > old>>SeqBits {
			next = now << SeqBits
		} else if next>>SeqBits-now > maxBorrowMS {
			// Too far ahead of the clock: let it catch up.
			if spins < 64 {
				runtime.Gosched()
			} else {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		if g.state.CompareAndSwap(old, next) {
			ms := next >> SeqBits
			return ms<<(NodeBits+SeqBits) | g.node | next&maxSeq
		}
	}
}

// Time returns the millisecond at which id was made (borrowed ids may be a
// little ahead of it).
func Time(id int64) time.Time {
	return Epoch.Add(time.Duration(id>>(NodeBits+SeqBits)) * time.Millisecond)
}

// NodeOf returns the node that made id.
func NodeOf(id int64) int64 { return id >> SeqBits & MaxNode }

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// checkpointer copies committed WAL frames into the database file on a
// connection of its own (PRAGMA wal_checkpoint(PASSIVE)) after every
// `after` appended messages, and at least every interval while anything
// is written.
//
// Without it the writer does all of it itself: when the WAL reaches
// wal_autocheckpoint pages, the commit that crossed it also copies every
// page written since the last checkpoint and fsyncs the database file,
// tens of milliseconds during which no message is committed (the tail of
// the commit latency: BenchmarkCommitLatency). A passive checkpoint on another connection runs
// concurrently with the writer (on the other core); the writer's own
// checkpoint then only finds the frames of the last few commits, and the
// next write transaction restarts the WAL from its start, so the WAL file
// stays below wal_autocheckpoint pages. Passes are spaced by messages,
// not by time, so that each one copies about as many pages as the
// writer's own checkpoint used to: checkpointing more often would copy the
// same hot index pages more times.
type checkpointer struct {
	db      *sql.DB
	cancel  context.CancelFunc
	done    sync.WaitGroup
	after   int64
	pending atomic.Int64  // messages appended since the last pass
	kick    chan struct{} // a pass is due (capacity 1)

	runs         atomic.Int64 // checkpoints run
	frames       atomic.Int64 // WAL frames at the last run
	checkpointed atomic.Int64 // of them, copied into the database file
}

func startCheckpointer(db *sql.DB, after int64, every time.Duration) *checkpointer {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{db: db, cancel: cancel, after: after, kick: make(chan struct{}, 1)}
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		c.loop(ctx, every)
	}()
	return c
}

func (c *checkpointer) loop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
			if c.pending.Load() == 0 {
				continue
			}
		}
		c.pending.Store(0)
		err := c.run(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			// Not fatal: the writer still checkpoints at wal_autocheckpoint.
			slog.Warn("sqlite: background checkpoint failed", "err", err)
			failing = true
		case err == nil:
			failing = false
		}
	}
}

// appended counts n messages written; it starts a pass every c.after.
func (c *checkpointer) appended(n int) {
	if c.pending.Add(int64(n)) >= c.after {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// run runs one passive checkpoint: it copies what it can without waiting
// for the writer or readers.
func (c *checkpointer) run(ctx context.Context) error {
	var busy, frames, done int64
	if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err != nil {
		return err
	}
	c.runs.Add(1)
	c.frames.Store(frames)
	c.checkpointed.Store(done)
	return nil
}

// stop ends the loop and closes the connection.
func (c *checkpointer) stop() error {
	c.cancel()
	c.done.Wait()
	if err := c.db.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Package sqlite is the SQLite implementation of store.Store for the
// one-process server: pure Go (modernc.org/sqlite, no cgo), one database file
// in the data directory, WAL journal, one writer connection and a pool of
// read-only connections.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/migrate"
)

// busyTimeoutMS is how long a connection waits for a lock held by another
// connection or process before failing with SQLITE_BUSY.
const busyTimeoutMS = 5000

// Config tunes the database connections. The zero value is the default.
type Config struct {
	// Synchronous is the durability of a commit: "NORMAL" (default: in
	// WAL mode a committed transaction survives a killed process, and the
	// last ones may be lost on an OS crash or power loss) or "FULL" (the
	// WAL is fsynced at every commit: an acknowledged commit survives an
	// OS crash too). docs/messaging.md gives the measured cost.
	Synchronous string
	// CacheSizeKiB is the writer's page cache (default 65536: 64 MiB,
	// the hot index pages of the message tables).
	CacheSizeKiB int
	// WALAutocheckpoint is the WAL size in pages (4 KiB) at which the
	// writer checkpoints after its commit (default 40000, ~160 MiB: with
	// the background checkpointer the writer only reaches it when the
	// background pass is behind; it then copies what that pass left and
	// the next write transaction restarts the WAL from its start).
	WALAutocheckpoint int
	// CheckpointAfter is the number of messages appended since the last
	// background checkpoint that starts the next one (default 4000: 8,000
	// to 24,000 WAL pages, 2.1 pages per message in large batches, 6 in
	// single-message commits; about what the writer's own checkpoint used
	// to copy at a time, so that the total checkpoint work does not grow). The background checkpointer copies committed WAL frames into
	// the database file on its own connection, concurrently with the
	// writer, instead of inside the commit that crosses
	// WALAutocheckpoint. Negative: no background checkpointer.
	CheckpointAfter int
	// CheckpointInterval is the longest time between background
	// checkpoints while anything is written (default 1s).
	CheckpointInterval time.Duration
}

func (c Config) withDefaults() (Config, error) {
	switch strings.ToUpper(c.Synchronous) {
	case "":
		c.Synchronous = "NORMAL"
	case "NORMAL", "FULL":
		c.Synchronous = strings.ToUpper(c.Synchronous)
	default:
		return c, fmt.Errorf("sqlite: synchronous %q: want NORMAL or FULL", c.Synchronous)
	}
	if c.CacheSizeKiB <= 0 {
		c.CacheSizeKiB = 65536
	}
	if c.WALAutocheckpoint <= 0 {
		c.WALAutocheckpoint = 40000
	}
	if c.CheckpointAfter == 0 {
		c.CheckpointAfter = 4000
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = time.Second
	}
	return c, nil
}

// Store is a store.Store on one SQLite database file.
type Store struct {
	path string
	w    *sql.DB // the one writer connection: SQLite serialises writers anyway
	r    *sql.DB // read-only connections, concurrent with the writer in WAL mode

	// Prepared hot-path statements (parsing SQL costs more than running a
	// primary key lookup); database/sql prepares them once per connection.
	userByID, userByName *sql.Stmt
	// The send path's relation checks.
	friend, isBlocked, member *sql.Stmt
	// The writer's multi-row message statements, prepared on first use.
	stmts stmtCache
	// now is the clock of message times (nil: time.Now); tests set it.
	now func() time.Time
	// ckpt is the background checkpointer (nil without one).
	ckpt *checkpointer
}

var _ store.Store = (*Store)(nil)

// Open opens (creating it and its directory if needed) the database at path
// with the default Config and applies pending migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenConfig(ctx, path, Config{})
}

// OpenConfig is Open with a Config.
//
// Connections use WAL (readers never block the writer), synchronous
// NORMAL or FULL (Config.Synchronous), foreign keys, a busy timeout, and
// BEGIN IMMEDIATE for transactions so that a transaction never fails to
// upgrade to a write lock.
func OpenConfig(ctx context.Context, path string, cfg Config) (*Store, error) {
	if path == "" || path == ":memory:" || strings.Contains(path, "?") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: unsupported database path %q", path)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create directory: %w", err)
	}
	// The driver runs the _pragma values sorted by name (busy_timeout
	// first), so each pragma is given once.
	base := url.Values{}
	base.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	base.Add("_pragma", "foreign_keys(1)")
	base.Add("_pragma", "synchronous("+cfg.Synchronous+")")
	base.Add("_pragma", "temp_store(MEMORY)")
	base.Set("_txlock", "immediate")

	wq := cloneValues(base)
	wq.Add("_pragma", "journal_mode(WAL)")
	wq.Add("_pragma", fmt.Sprintf("cache_size(%d)", -cfg.CacheSizeKiB))
	wq.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", cfg.WALAutocheckpoint))
	// A WAL grown beyond 64 MiB (a background pass fell behind) is cut
	// back to it when it restarts.
	wq.Add("_pragma", "journal_size_limit(67108864)")
	w, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// Create the file and switch it to WAL before any reader opens it.
	if err := pingWriter(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	rq := cloneValues(base)
	rq.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)

	s := &Store{path: path, w: w, r: r}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.CheckpointAfter > 0 {
		ck, err := sql.Open("sqlite", path+"?"+base.Encode())
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		s.ckpt = startCheckpointer(ck, int64(cfg.CheckpointAfter), cfg.CheckpointInterval)
	}
	return s, nil
}

// pingWriter opens the writer connection. Switching a new file to WAL
// while another process does the same (or migrates it) can fail with
// SQLITE_BUSY without waiting on the busy timeout (SQLite refuses to wait
// when waiting could deadlock), so the first connection is retried for as
// long as the busy timeout.
func pingWriter(ctx context.Context, w *sql.DB) error {
	deadline := time.Now().Add(busyTimeoutMS * time.Millisecond)
	backoff := time.Millisecond
	for {
		err := w.PingContext(ctx)
		if err == nil || sqliteCode(err)&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// Path returns the database file path.
func (s *Store) Path() string { return s.path }

// Migrate applies pending schema migrations.
func (s *Store) Migrate(ctx context.Context) error {
	if _, err := migrate.Run(ctx, s.w, Dialect, Migrations); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&s.userByID, "SELECT " + userCols + " FROM users WHERE id = ?"},
		{&s.userByName, "SELECT " + userCols + " FROM users WHERE username = ?"},
		{&s.friend, "SELECT " + friendCols + " FROM friendships WHERE user_id = ? AND friend_id = ? AND status = 0"},
		{&s.isBlocked, "SELECT 1 FROM blocks WHERE user_id = ? AND blocked_id = ?"},
		{&s.member, "SELECT " + memberCols + " FROM group_members WHERE group_id = ? AND user_id = ? AND status = 0"},
	} {
		st, err := s.r.PrepareContext(ctx, p.q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		*p.st = st
	}
	return s.stmts.prepare(ctx, s.w, messageStmts())
}

// Close closes the database.
func (s *Store) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.userByID, s.userByName, s.friend, s.isBlocked, s.member} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	errs = append(errs, s.stmts.close())
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.stop())
	}
	return errors.Join(append(errs, s.r.Close(), s.w.Close())...)
}

// Dialect is the SQLite migration dialect.
var Dialect = migrate.Dialect{
	Name: "sqlite",
	CreateTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`,
	TransactionalDDL: true, // and _txlock=immediate takes the write lock at BEGIN
}

// sqliteCode returns the extended result code of err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

func isUniqueViolation(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func isForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

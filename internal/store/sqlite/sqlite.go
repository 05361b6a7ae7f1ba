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
}

var _ store.Store = (*Store)(nil)

// Open opens (creating it and its directory if needed) the database at path
// and applies pending migrations.
//
// Connections use WAL (readers never block the writer), synchronous=NORMAL
// (a committed transaction survives a process crash; the last ones may be
// lost on power loss), foreign keys, a busy timeout, and BEGIN IMMEDIATE for
// transactions so that a transaction never fails to upgrade to a write lock.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.Contains(path, "?") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: unsupported database path %q", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create directory: %w", err)
	}
	base := url.Values{}
	base.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	base.Add("_pragma", "foreign_keys(1)")
	base.Add("_pragma", "synchronous(NORMAL)")
	base.Add("_pragma", "temp_store(MEMORY)")
	base.Set("_txlock", "immediate")

	wq := cloneValues(base)
	wq.Add("_pragma", "journal_mode(WAL)")
	// The writer's page cache holds the hot index pages of the message
	// tables (64 MiB), and the WAL is checkpointed every 10000 pages
	// (~40 MiB) instead of 1000: fewer checkpoint fsyncs under group
	// commit of large batches.
	wq.Add("_pragma", "cache_size(-65536)")
	wq.Add("_pragma", "wal_autocheckpoint(10000)")
	for _, x := range strings.Split(os.Getenv("XP"), "|") {
		if x != "" {
			wq.Add("_pragma", x)
		}
	}
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

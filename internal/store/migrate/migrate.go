// Package migrate applies versioned schema migrations to a database/sql
// database. Each SQL dialect (SQLite, MySQL) supplies its Dialect and its
// ordered list of migrations; the runner records applied versions in a
// schema_migrations table and is safe against concurrent runners.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Migration is one schema change.
type Migration struct {
	Version    int64    // > 0, strictly increasing in a list
	Name       string   // short description, recorded with the version
	Statements []string // executed in order; one statement each
}

// Dialect is what the runner needs to know about a database. Statements use
// '?' placeholders.
type Dialect struct {
	// Name names the dialect in errors.
	Name string
	// CreateTable creates the schema_migrations table if it does not exist,
	// with columns version (integer primary key), name (text) and
	// applied_at (integer, unix milliseconds).
	CreateTable string
	// TransactionalDDL says that a migration's statements and its version
	// row can commit atomically (SQLite). Then each migration runs in one
	// transaction that re-checks the version, so concurrent runners need no
	// Lock as long as the transaction takes the write lock at BEGIN.
	// Otherwise (MySQL: DDL commits implicitly) statements run one by one
	// and Lock must serialise runners.
	TransactionalDDL bool
	// Lock, if set, takes an exclusive lock held on conn (e.g. MySQL
	// GET_LOCK) until the returned unlock is called.
	Lock func(ctx context.Context, conn *sql.Conn) (unlock func() error, err error)
}

// Validate checks that ms is ordered and well formed.
func Validate(ms []Migration) error {
	var last int64
	for i, m := range ms {
		if m.Version <= last {
			return fmt.Errorf("migrate: migration %d (#%d) not after %d", m.Version, i, last)
		}
		if m.Name == "" || len(m.Statements) == 0 {
			return fmt.Errorf("migrate: migration %d has no name or no statements", m.Version)
		}
		last = m.Version
	}
	return nil
}

// Applied returns the versions recorded in schema_migrations, ascending.
func Applied(ctx context.Context, db *sql.DB, d Dialect) ([]int64, error) {
	if _, err := db.ExecContext(ctx, d.CreateTable); err != nil {
		return nil, fmt.Errorf("migrate(%s): create schema_migrations: %w", d.Name, err)
	}
	return applied(ctx, db)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func applied(ctx context.Context, q querier) ([]int64, error) {
	rows, err := q.QueryContext(ctx, "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	defer rows.Close()
	var vs []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	return vs, nil
}

// ErrUnknownVersion means the database records a migration this binary does
// not know: it was migrated by a newer version. The runner refuses to work
// on it rather than guess.
var ErrUnknownVersion = errors.New("migrate: database has a migration unknown to this binary")

// Run applies the migrations of ms that the database lacks, in order, and
// returns the versions it applied.
func Run(ctx context.Context, db *sql.DB, d Dialect, ms []Migration) (appliedNow []int64, err error) {
	if err := Validate(ms); err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate(%s): connection: %w", d.Name, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, d.CreateTable); err != nil {
		return nil, fmt.Errorf("migrate(%s): create schema_migrations: %w", d.Name, err)
	}
	if d.Lock != nil {
		unlock, err := d.Lock(ctx, conn)
		if err != nil {
			return nil, fmt.Errorf("migrate(%s): lock: %w", d.Name, err)
		}
		defer func() {
			if uerr := unlock(); uerr != nil && err == nil {
				err = fmt.Errorf("migrate(%s): unlock: %w", d.Name, uerr)
			}
		}()
	}
	have, err := applied(ctx, conn)
	if err != nil {
		return nil, err
	}
	known := make(map[int64]bool, len(ms))
	for _, m := range ms {
		known[m.Version] = true
	}
	for _, v := range have {
		if !known[v] {
			return nil, fmt.Errorf("%w (%s version %d)", ErrUnknownVersion, d.Name, v)
		}
	}
	for _, m := range ms {
		if slices.Contains(have, m.Version) {
			continue
		}
		var done bool
		if d.TransactionalDDL {
			done, err = applyTx(ctx, conn, m)
		} else {
			done, err = applyPlain(ctx, conn, m)
		}
		if err != nil {
			return appliedNow, fmt.Errorf("migrate(%s): migration %d %q: %w", d.Name, m.Version, m.Name, err)
		}
		if done {
			appliedNow = append(appliedNow, m.Version)
		}
	}
	return appliedNow, nil
}

const insertVersion = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"

func applyTx(ctx context.Context, conn *sql.Conn, m Migration) (bool, error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// Another runner may have applied it since we read the list.
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.Version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	for i, s := range m.Statements {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return false, fmt.Errorf("statement %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, insertVersion, m.Version, m.Name, time.Now().UnixMilli()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

func applyPlain(ctx context.Context, conn *sql.Conn, m Migration) (bool, error) {
	for i, s := range m.Statements {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return false, fmt.Errorf("statement %d: %w", i+1, err)
		}
	}
	if _, err := conn.ExecContext(ctx, insertVersion, m.Version, m.Name, time.Now().UnixMilli()); err != nil {
		return false, err
	}
	return true, nil
}

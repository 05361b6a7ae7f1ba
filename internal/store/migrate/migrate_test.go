package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/goimdev/goim/internal/store/migrate"
)

const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`

func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db")+"?_txlock=immediate&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestValidate(t *testing.T) {
	ok := migrate.Migration{Version: 1, Name: "a", Statements: []string{"SELECT 1"}}
	tests := []struct {
		name string
		ms   []migrate.Migration
		ok   bool
	}{
		{"empty", nil, true},
		{"one", []migrate.Migration{ok}, true},
		{"zero version", []migrate.Migration{{Version: 0, Name: "a", Statements: []string{"x"}}}, false},
		{"out of order", []migrate.Migration{{Version: 2, Name: "b", Statements: []string{"x"}}, ok}, false},
		{"duplicate", []migrate.Migration{ok, ok}, false},
		{"no name", []migrate.Migration{{Version: 1, Statements: []string{"x"}}}, false},
		{"no statements", []migrate.Migration{{Version: 1, Name: "a"}}, false},
	}
	for _, tt := range tests {
		if err := migrate.Validate(tt.ms); (err == nil) != tt.ok {
			t.Errorf("%s: Validate = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestRun(t *testing.T) {
	for _, transactional := range []bool{true, false} {
		name := "plain"
		if transactional {
			name = "transactional"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db := openDB(t)
			locks := 0
			d := migrate.Dialect{Name: "test", CreateTable: createTable, TransactionalDDL: transactional}
			if !transactional {
				d.Lock = func(ctx context.Context, conn *sql.Conn) (func() error, error) {
					locks++
					return func() error { locks--; return nil }, nil
				}
			}
			v1 := migrate.Migration{Version: 1, Name: "t1", Statements: []string{"CREATE TABLE t1 (a INTEGER)"}}
			v3 := migrate.Migration{Version: 3, Name: "t3", Statements: []string{"CREATE TABLE t3 (a INTEGER)", "INSERT INTO t3 VALUES (3)"}}
			got, err := migrate.Run(ctx, db, d, []migrate.Migration{v1, v3})
			if err != nil || !slices.Equal(got, []int64{1, 3}) {
				t.Fatalf("first Run = %v, %v", got, err)
			}
			if locks != 0 {
				t.Fatalf("lock held after Run: %d", locks)
			}
			// Again: nothing to do.
			if got, err := migrate.Run(ctx, db, d, []migrate.Migration{v1, v3}); err != nil || len(got) != 0 {
				t.Fatalf("second Run = %v, %v", got, err)
			}
			// A missing older version is applied; a failing one stops the run
			// and is not recorded.
			v2 := migrate.Migration{Version: 2, Name: "t2", Statements: []string{"CREATE TABLE t2 (a INTEGER)"}}
			bad := migrate.Migration{Version: 4, Name: "bad", Statements: []string{"CREATE TABLE t4 (a INTEGER)", "NOT SQL"}}
			got, err = migrate.Run(ctx, db, d, []migrate.Migration{v1, v2, v3, bad})
			if err == nil || !slices.Equal(got, []int64{2}) {
				t.Fatalf("Run with a bad migration = %v, %v", got, err)
			}
			applied, err := migrate.Applied(ctx, db, d)
			if err != nil || !slices.Equal(applied, []int64{1, 2, 3}) {
				t.Fatalf("Applied = %v, %v", applied, err)
			}
			var n int
			err = db.QueryRow("SELECT COUNT(*) FROM sqlite_master WHERE name = 't4'").Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			if transactional && n != 0 {
				t.Fatal("a failed transactional migration left its table")
			}
			// The database now knows versions this list lacks.
			if _, err := migrate.Run(ctx, db, d, []migrate.Migration{v1}); !errors.Is(err, migrate.ErrUnknownVersion) {
				t.Fatalf("Run with an older list = %v, want ErrUnknownVersion", err)
			}
		})
	}
}

func TestRunLockError(t *testing.T) {
	db := openDB(t)
	boom := errors.New("boom")
	d := migrate.Dialect{Name: "test", CreateTable: createTable,
		Lock: func(context.Context, *sql.Conn) (func() error, error) { return nil, boom }}
	_, err := migrate.Run(context.Background(), db, d, []migrate.Migration{{Version: 1, Name: "a", Statements: []string{"CREATE TABLE a (x)"}}})
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the lock error", err)
	}
}

package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/migrate"
	"github.com/goimdev/goim/internal/store/storetest"
	"github.com/goimdev/goim/internal/testenv"
)

const dsnEnv = "GOIM_TEST_MYSQL_DSN"

// testDSN returns the DSN of a new empty database, dropped when the test
// ends, on the server GOIM_TEST_MYSQL_DSN points at; it skips the test
// when the variable is unset.
func testDSN(t testing.TB) string { return testenv.MySQLDSN(t, "goim_test") }

// serverDSN returns GOIM_TEST_MYSQL_DSN, or skips the test saying why.
func serverDSN(t testing.TB) string { return testenv.MySQLServerDSN(t) }

func openTest(t testing.TB, dsn string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the suite on one fresh database, emptied before each
// subtest (DML is much cheaper than creating and migrating a database per
// subtest, which costs a dozen DDL statements and their fsyncs).
func TestConformance(t *testing.T) {
	dsn := testDSN(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s := openTest(t, dsn)
		emptyTables(t, s)
		return s
	})
}

// emptyTables deletes every row of the store's tables, children first.
func emptyTables(t testing.TB, s *Store) {
	t.Helper()
	err := s.inTx(context.Background(), "empty tables", func(tx *sql.Tx) error {
		rows, err := tx.Query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE 'message\\_2%'")
		if err != nil {
			return err
		}
		var months []string
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return err
			}
			months = append(months, name)
		}
		rows.Close()
		for _, table := range append(months, "message_ref", "conversation_month", "conversation", "user_conversation", "delivery_cursor") {
			if _, err := tx.Exec("DELETE FROM " + table); err != nil {
				return err
			}
		}
		for _, table := range []string{"user_group", "group_member", "`group`", "friendship", "friend_request", "`block`",
			"list_version", "device", "user"} {
			if _, err := tx.Exec("DELETE FROM " + table); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenBadDSN(t *testing.T) {
	tests := []struct{ name, dsn string }{
		{"empty", ""},
		{"unparsable", "not a dsn"},
		{"no database", "root@tcp(127.0.0.1:3306)/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := Open(context.Background(), tt.dsn); err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", tt.dsn)
			}
		})
	}
	// Nothing listens on port 1: the dial fails within the timeout.
	c := DefaultConfig()
	c.DSN, c.DialTimeout = "root@tcp(127.0.0.1:1)/test", time.Second
	if s, err := OpenConfig(context.Background(), c); err == nil {
		s.Close()
		t.Fatal("Open on a closed port succeeded")
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{DSN: "x", MaxOpenConns: 4}.withDefaults()
	d := DefaultConfig()
	if c.MaxOpenConns != 4 || c.MaxIdleConns != 4 || c.ConnMaxLifetime != d.ConnMaxLifetime ||
		c.ConnMaxIdleTime != d.ConnMaxIdleTime || c.DialTimeout != d.DialTimeout || c.MigrateLockTimeout != d.MigrateLockTimeout {
		t.Fatalf("withDefaults = %+v", c)
	}
	cfg, err := driverConfig(Config{DSN: "u:p@tcp(db:3306)/goim?parseTime=false&loc=Local&interpolateParams=false&charset=latin1"}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.ParseTime || cfg.Loc != time.UTC || !cfg.InterpolateParams || cfg.MultiStatements || cfg.Timeout != d.DialTimeout {
		t.Fatalf("driver config not forced: %+v", cfg)
	}
	if f := cfg.FormatDSN(); !strings.Contains(f, "charset=utf8mb4") {
		t.Fatalf("charset not forced to utf8mb4: %s", f)
	}
}

// Columns and tables: InnoDB, utf8mb4, binary usernames, the indexes the
// lookups use.
func TestSchema(t *testing.T) {
	s := openTest(t, testDSN(t))
	ctx := context.Background()
	rows, err := s.db.QueryContext(ctx, `SELECT table_name, engine, table_collation FROM information_schema.tables
		WHERE table_schema = DATABASE()`)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]bool{}
	for rows.Next() {
		var name, engine, coll string
		if err := rows.Scan(&name, &engine, &coll); err != nil {
			t.Fatal(err)
		}
		tables[name] = true
		if engine != "InnoDB" || coll[:7] != "utf8mb4" {
			t.Errorf("table %s: engine %s collation %s", name, engine, coll)
		}
	}
	rows.Close()
	for _, want := range []string{"schema_migrations", "user", "device", "list_version", "friend_request", "friendship",
		"block", "group", "group_member", "user_group"} {
		if !tables[want] {
			t.Errorf("table %s missing (have %v)", want, tables)
		}
	}
	var typ string
	if err := s.db.QueryRowContext(ctx, `SELECT data_type FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = 'user' AND column_name = 'username'`).Scan(&typ); err != nil || typ != "varbinary" {
		t.Errorf("username column type %q, %v; want varbinary", typ, err)
	}
	// Every hot lookup is a primary-key or index lookup (on existing rows:
	// a lookup of a missing key is answered without a plan).
	a, b := seedPair(t, s)
	explain := []struct{ q, key string }{
		{"SELECT * FROM friendship WHERE user_id = %[1]d AND friend_id = %[2]d", "PRIMARY"},
		{"SELECT * FROM `block` WHERE user_id = %[1]d AND blocked_id = %[2]d", "PRIMARY"},
		{"SELECT * FROM group_member WHERE group_id = %[3]d AND user_id = %[2]d", "PRIMARY"},
		{"SELECT * FROM user WHERE username = 'seed-a'", "uk_user_username"},
		{"SELECT * FROM friendship WHERE user_id = %[1]d AND version > 0 ORDER BY version", ""},
		{"SELECT * FROM friend_request WHERE to_user = %[1]d ORDER BY updated_at DESC LIMIT 5", ""},
		{"SELECT * FROM user_group WHERE user_id = %[1]d AND version > 0 ORDER BY version", ""},
		{"SELECT * FROM group_member WHERE group_id = %[3]d AND version > 0 ORDER BY version", ""},
	}
	for _, e := range explain {
		q := e.q
		if strings.Contains(q, "%") {
			q = fmt.Sprintf(q, a, b, seedGroup)
		}
		key := explainKey(t, s.db, q)
		if key == "" || (e.key != "" && key != e.key) {
			t.Errorf("EXPLAIN %s: key %q, want %q", e.q, key, e.key)
		}
	}
}

// seedGroup is the group seedPair creates (the first of a new database).
const seedGroup = 1

// seedPair creates two friends a and b, a blocking b, a friend request
// from b to a and a group of both (seedGroup).
func seedPair(t testing.TB, s *Store) (a, b int64) {
	t.Helper()
	ctx := context.Background()
	ids := make([]int64, 2)
	for i, name := range []string{"seed-a", "seed-b"} {
		id, err := s.CreateUser(ctx, &store.User{Username: name, PasswordHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	a, b = ids[0], ids[1]
	req, _, err := s.CreateFriendRequest(ctx, a, b, "hi")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveFriendRequest(ctx, req.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := s.BlockUser(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	if gid, err := s.CreateGroup(ctx, &store.Group{OwnerID: a, Name: "g", MaxMembers: 10}, []int64{b}); err != nil || gid != seedGroup {
		t.Fatalf("CreateGroup = %d, %v", gid, err)
	}
	return a, b
}

// explainKey returns the key EXPLAIN says q uses ("" for none).
func explainKey(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN " + q)
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		t.Fatalf("EXPLAIN %s: no rows", q)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	for i, c := range cols {
		if c == "key" {
			return vals[i].String
		}
	}
	return ""
}

func TestMigrations(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	s := openTest(t, dsn)
	vs, err := migrate.Applied(ctx, s.db, s.dialect)
	if err != nil || len(vs) != len(Migrations) {
		t.Fatalf("applied %v, %v; want %d migrations", vs, err, len(Migrations))
	}
	// Idempotent: again through Migrate, through a second Open, and each
	// statement re-run on its own (a migration interrupted half way).
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	openTest(t, dsn)
	for _, m := range Migrations {
		for i, st := range m.Statements {
			if _, err := s.db.ExecContext(ctx, st); err != nil {
				t.Errorf("migration %d statement %d is not re-runnable: %v", m.Version, i+1, err)
			}
		}
	}
	// A database migrated by a newer binary is refused.
	if _, err := s.db.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); !errors.Is(err, migrate.ErrUnknownVersion) {
		t.Fatalf("Migrate on a newer database = %v, want ErrUnknownVersion", err)
	}
}

// Concurrent starts on an empty database: the lock serialises them, every
// migration is applied once, and all stores work.
func TestConcurrentOpen(t *testing.T) {
	dsn := testDSN(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(context.Background(), dsn) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("Open #%d: %v", i, errs[i])
		}
		t.Cleanup(func() { s.Close() })
	}
	var count, distinct int
	if err := stores[0].db.QueryRow("SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations").Scan(&count, &distinct); err != nil {
		t.Fatal(err)
	}
	if count != len(Migrations) || distinct != len(Migrations) {
		t.Fatalf("schema_migrations has %d rows (%d versions), want %d", count, distinct, len(Migrations))
	}
	for i, s := range stores {
		if _, err := s.CreateUser(context.Background(), &store.User{Username: fmt.Sprint("u", i), PasswordHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stores[0].UserByUsername(context.Background(), fmt.Sprint("u", n-1)); err != nil {
		t.Fatalf("a write through another store is not visible: %v", err)
	}
}

// The migration lock is exclusive: while one connection holds it, another
// runner waits and fails at its timeout.
func TestMigrationLock(t *testing.T) {
	s := openTest(t, testDSN(t))
	ctx := context.Background()
	c1, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	unlock, err := getLock(ctx, c1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := getLock(ctx, c2, time.Second); err == nil {
		t.Fatal("a second connection took the held migration lock")
	}
	d := newDialect(time.Second)
	if _, err := migrate.Run(ctx, s.db, d, Migrations); err == nil {
		t.Fatal("migrate.Run ran while another runner held the lock")
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock2, err := getLock(ctx, c2, time.Second)
	if err != nil {
		t.Fatalf("lock not free after unlock: %v", err)
	}
	if err := unlock2(); err != nil {
		t.Fatal(err)
	}
}

// Deadlocks are retried: two transactions locking two rows in opposite
// orders both end up committed.
func TestDeadlockRetry(t *testing.T) {
	s := openTest(t, testDSN(t))
	ctx := context.Background()
	a := &store.User{Username: "a", PasswordHash: "h"}
	b := &store.User{Username: "b", PasswordHash: "h"}
	for _, u := range []*store.User{a, b} {
		if _, err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	// Both transactions hold their first lock before either asks for its
	// second (on the first attempt only), so InnoDB must pick a victim.
	var ready sync.WaitGroup
	ready.Add(2)
	var wg sync.WaitGroup
	attempts := make([]int, 2)
	for i, order := range [][2]int64{{a.ID, b.ID}, {b.ID, a.ID}} {
		wg.Go(func() {
			err := s.inTx(ctx, "test", func(tx *sql.Tx) error {
				attempts[i]++
				if _, err := tx.ExecContext(ctx, "UPDATE user SET nickname = ? WHERE id = ?", fmt.Sprint("x", i), order[0]); err != nil {
					return err
				}
				if attempts[i] == 1 {
					ready.Done()
					ready.Wait()
				}
				_, err := tx.ExecContext(ctx, "UPDATE user SET avatar = ? WHERE id = ?", fmt.Sprint("y", i), order[1])
				return err
			})
			if err != nil {
				t.Errorf("tx %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if attempts[0]+attempts[1] < 3 {
		t.Fatalf("attempts %v: no deadlock was retried", attempts)
	}
}

func TestIsRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&mysql.MySQLError{Number: 1213}, true},
		{fmt.Errorf("wrapped: %w", &mysql.MySQLError{Number: 1213}), true},
		{&mysql.MySQLError{Number: 1020}, true},
		{&mysql.MySQLError{Number: 1062}, false},
		{errors.New("other"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := isRetryable(tt.err); got != tt.want {
			t.Errorf("isRetryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

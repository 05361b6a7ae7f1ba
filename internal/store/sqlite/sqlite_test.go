package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/migrate"
	"github.com/goimdev/goim/internal/store/storetest"
)

func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "goim.db"))
	})
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", ":memory:", "a?b", "file:x.db"} {
		if s, err := Open(context.Background(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestPragmas(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "sub", "dir", "goim.db"))
	ctx := context.Background()
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", fmt.Sprint(busyTimeoutMS)},
		{"synchronous", "1"}, // NORMAL
	}
	for _, tt := range tests {
		for name, db := range map[string]func() (string, error){
			"writer": func() (v string, err error) { err = s.w.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&v); return },
			"reader": func() (v string, err error) { err = s.r.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&v); return },
		} {
			got, err := db()
			if err != nil {
				t.Fatalf("%s PRAGMA %s: %v", name, tt.pragma, err)
			}
			if got != tt.want {
				t.Errorf("%s PRAGMA %s = %q, want %q", name, tt.pragma, got, tt.want)
			}
		}
	}
	// Readers are read-only.
	if _, err := s.r.ExecContext(ctx, "INSERT INTO users (username, password_hash, created_at, updated_at) VALUES ('x','y',0,0)"); err == nil {
		t.Fatal("a write through the read pool succeeded")
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goim.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	u := &store.User{Username: "persist", PasswordHash: "h", Nickname: "P"}
	if _, err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, path)
	got, err := s2.UserByUsername(ctx, "persist")
	if err != nil || got.ID != u.ID || got.Nickname != "P" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	vs, err := migrate.Applied(ctx, s2.w, Dialect)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != len(Migrations) || vs[len(vs)-1] != Migrations[len(Migrations)-1].Version {
		t.Fatalf("applied versions %v, want every migration once", vs)
	}
}

// Two stores on one file (two processes, in effect) open and migrate
// concurrently without error and without applying a migration twice.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goim.db")
	var wg sync.WaitGroup
	stores := make([]*Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = Open(context.Background(), path) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("Open #%d: %v", i, errs[i])
		}
		defer s.Close()
	}
	vs, err := migrate.Applied(context.Background(), stores[0].w, Dialect)
	if err != nil || len(vs) != len(Migrations) {
		t.Fatalf("applied %v, %v", vs, err)
	}
	// Writes through different stores on one file all land.
	for i, s := range stores {
		if _, err := s.CreateUser(context.Background(), &store.User{Username: fmt.Sprint("u", i), PasswordHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := stores[0].UserByUsername(context.Background(), "u3")
	if err != nil || got == nil {
		t.Fatalf("a write through another store is not visible: %v", err)
	}
}

func TestDatabaseNewerThanBinary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goim.db")
	s := openTest(t, path)
	if _, err := s.w.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); !errors.Is(err, migrate.ErrUnknownVersion) {
		t.Fatalf("Migrate on a newer database = %v, want ErrUnknownVersion", err)
	}
}

func BenchmarkUserByID(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "goim.db"))
	ctx := context.Background()
	u := &store.User{Username: "bench", PasswordHash: "h"}
	if _, err := s.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.UserByID(ctx, u.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCreateUser(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "goim.db"))
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.CreateUser(ctx, &store.User{Username: fmt.Sprint("u", i), PasswordHash: "h"}); err != nil {
			b.Fatal(err)
		}
	}
}

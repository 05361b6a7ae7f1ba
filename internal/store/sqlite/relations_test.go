package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/migrate"
)

// A database created by a binary that knew only migration 1 upgrades in
// place: its users survive and the relation tables work.
func TestUpgradeFromUsersOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "goim.db")
	old, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Run(ctx, old, Dialect, Migrations[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`INSERT INTO users (username, password_hash, created_at, updated_at)
		VALUES ('old1', 'h', 1, 1), ('old2', 'h', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, path)
	vs, err := migrate.Applied(ctx, s.w, Dialect)
	if err != nil || len(vs) != len(Migrations) {
		t.Fatalf("applied %v, %v", vs, err)
	}
	a, err := s.UserByUsername(ctx, "old1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.UserByUsername(ctx, "old2")
	if err != nil {
		t.Fatal(err)
	}
	req, _, err := s.CreateFriendRequest(ctx, a.ID, b.ID, "hi")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveFriendRequest(ctx, req.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Friend(ctx, b.ID, a.ID); err != nil {
		t.Fatalf("Friend after upgrade: %v", err)
	}
}

// The relation tables refuse rows that name no user, whatever the code
// above them does (foreign keys are on).
func TestRelationForeignKeys(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "goim.db"))
	for _, q := range []string{
		"INSERT INTO friendships (user_id, friend_id, version, created_at, updated_at) VALUES (1000, 1001, 1, 0, 0)",
		"INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (1000, 1001, 0)",
		"INSERT INTO groups (owner_id, name, max_members, created_at, updated_at) VALUES (1000, 'g', 5, 0, 0)",
	} {
		_, err := s.w.Exec(q)
		if !isForeignKeyViolation(err) {
			t.Errorf("%s: %v, want a foreign key violation", q, err)
		}
	}
	// At most one pending request per direction, even written directly.
	ctx := context.Background()
	a := &store.User{Username: "fk1", PasswordHash: "h"}
	b := &store.User{Username: "fk2", PasswordHash: "h"}
	for _, u := range []*store.User{a, b} {
		if _, err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	ins := "INSERT INTO friend_requests (from_user, to_user, status, created_at, updated_at) VALUES (?, ?, ?, 0, 0)"
	for i, st := range []int{0, 1, 1, 0} {
		_, err := s.w.Exec(ins, a.ID, b.ID, st)
		if dup := i == 3; dup != isUniqueViolation(err) || (!dup && err != nil) {
			t.Fatalf("insert #%d (status %d): %v", i, st, err)
		}
	}
}

// benchSet is a store where one user has n friends, blocked n other users
// and owns a group of the n friends, with ids of a present and an absent
// row for each lookup.
type benchSet struct {
	s                     *Store
	user                  int64
	friend, stranger      int64
	group, member, absent int64
}

func benchRelations(b *testing.B, n int) benchSet {
	b.Helper()
	ctx := context.Background()
	s := openTest(b, filepath.Join(b.TempDir(), "goim.db"))
	ids := make([]int64, 2*n+1)
	for i := range ids {
		id, err := s.CreateUser(ctx, &store.User{Username: fmt.Sprint("bench", i), PasswordHash: "h"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
	}
	user := ids[0]
	for _, f := range ids[1 : n+1] {
		req, _, err := s.CreateFriendRequest(ctx, user, f, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.ResolveFriendRequest(ctx, req.ID, true); err != nil {
			b.Fatal(err)
		}
	}
	for _, x := range ids[n+1:] {
		if err := s.BlockUser(ctx, user, x); err != nil {
			b.Fatal(err)
		}
	}
	gid, err := s.CreateGroup(ctx, &store.Group{OwnerID: user, Name: "bench", MaxMembers: n + 2}, ids[1:n+1])
	if err != nil {
		b.Fatal(err)
	}
	return benchSet{s: s, user: user, friend: ids[n/2], stranger: ids[n+n/2], group: gid, member: ids[n/2], absent: ids[n+n/2]}
}

// BenchmarkRelationLookup measures the send path's relation checks on a
// cache miss: one prepared primary-key SELECT on the read pool, for a row
// that exists and one that does not, sequentially (latency) and from
// every P (throughput).
func BenchmarkRelationLookup(b *testing.B) {
	bs := benchRelations(b, 500)
	ctx := context.Background()
	lookups := []struct {
		name string
		fn   func() error
	}{
		{"Friend/found", func() error { _, err := bs.s.Friend(ctx, bs.user, bs.friend); return err }},
		{"Friend/absent", func() error {
			_, err := bs.s.Friend(ctx, bs.user, bs.stranger)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return fmt.Errorf("Friend(stranger) = %v", err)
		}},
		{"IsBlocked/found", func() error {
			if ok, err := bs.s.IsBlocked(ctx, bs.user, bs.stranger); !ok || err != nil {
				return fmt.Errorf("IsBlocked = %v, %v", ok, err)
			}
			return nil
		}},
		{"IsBlocked/absent", func() error {
			if ok, err := bs.s.IsBlocked(ctx, bs.user, bs.friend); ok || err != nil {
				return fmt.Errorf("IsBlocked = %v, %v", ok, err)
			}
			return nil
		}},
		{"Member/found", func() error { _, err := bs.s.Member(ctx, bs.group, bs.member); return err }},
		{"Member/absent", func() error {
			_, err := bs.s.Member(ctx, bs.group, bs.absent)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return fmt.Errorf("Member(absent) = %v", err)
		}},
	}
	for _, l := range lookups {
		b.Run(l.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := l.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(l.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.fn(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkMemberIDs measures reading the member list of a 500-member
// group (the fan-out list of a group message on a cache miss).
func BenchmarkMemberIDs(b *testing.B) {
	bs := benchRelations(b, 500)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ids, err := bs.s.MemberIDs(ctx, bs.group)
		if err != nil || len(ids) != 501 {
			b.Fatalf("MemberIDs = %d ids, %v", len(ids), err)
		}
	}
}

// BenchmarkAddRemoveMember measures the write side: one member joining and
// leaving a 500-member group (two transactions, each bumping two lists).
func BenchmarkAddRemoveMember(b *testing.B) {
	bs := benchRelations(b, 500)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bs.s.AddMembers(ctx, bs.group, []int64{bs.absent}, store.RoleMember); err != nil {
			b.Fatal(err)
		}
		if err := bs.s.RemoveMember(ctx, bs.group, bs.absent); err != nil {
			b.Fatal(err)
		}
	}
}

package mysql

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/store"
)

// Concurrent friend, group and pruning transactions over overlapping users
// and groups: the lock order keeps them deadlock-free (or retried), and
// every invariant of the versioned lists holds at the end.
func TestConcurrentMixed(t *testing.T) {
	s := openTest(t, testDSN(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const nUsers, workers, ops = 6, 4, 60
	var u []int64
	for i := range nUsers {
		id, err := s.CreateUser(ctx, &store.User{Username: fmt.Sprint("mix", i), PasswordHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		u = append(u, id)
	}
	var groups []int64
	for i := range 2 {
		id, err := s.CreateGroup(ctx, &store.Group{OwnerID: u[i], Name: "mix", MaxMembers: 4}, u[2:4])
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, id)
	}
	expected := []error{store.ErrConflict, store.ErrNotFound, store.ErrGroupFull}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok [9]int // successes per kind of operation
	)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 42))
			pick := func() (int64, int64) {
				i := r.IntN(nUsers)
				j := (i + 1 + r.IntN(nUsers-1)) % nUsers
				return u[i], u[j]
			}
			for range ops {
				a, b := pick()
				g := groups[r.IntN(len(groups))]
				var err error
				op := r.IntN(9)
				switch op {
				case 0, 1:
					var req *store.FriendRequest
					if req, _, err = s.CreateFriendRequest(ctx, a, b, "hi"); err == nil && r.IntN(2) == 0 {
						_, err = s.ResolveFriendRequest(ctx, req.ID, r.IntN(3) > 0)
					}
				case 2:
					err = s.DeleteFriend(ctx, a, b)
				case 3:
					err = s.SetFriendRemark(ctx, a, b, "r")
				case 4:
					_, err = s.AddMembers(ctx, g, []int64{a, b}, store.RoleMember)
				case 5:
					err = s.RemoveMember(ctx, g, a)
				case 6:
					nick := "n"
					err = s.UpdateMember(ctx, g, a, store.MemberUpdate{Nickname: &nick})
				case 7:
					name := fmt.Sprint("mix ", r.IntN(100))
					err = s.UpdateGroup(ctx, g, store.GroupUpdate{Name: &name})
				case 8:
					_, err = s.PruneTombstones(ctx, time.Now().Add(time.Hour), 3)
				}
				if err != nil && !isExpected(err, expected) {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				if err == nil {
					mu.Lock()
					ok[op]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for op, n := range ok {
		if n == 0 {
			t.Errorf("operation %d never succeeded (successes %v): the test exercises nothing", op, ok)
		}
	}
	t.Logf("successes per operation: %v", ok)
	checkInvariants(t, s)
}

func isExpected(err error, expected []error) bool {
	for _, e := range expected {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// checkInvariants checks the relation tables against each other with SQL.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	checks := []struct{ name, q string }{
		{"friendships are symmetric", `SELECT COUNT(*) FROM friendship f LEFT JOIN friendship r
			ON r.user_id = f.friend_id AND r.friend_id = f.user_id AND r.status = 0
			WHERE f.status = 0 AND r.user_id IS NULL`},
		{"friend rows within their list's version", `SELECT COUNT(*) FROM friendship f LEFT JOIN list_version v
			ON v.user_id = f.user_id AND v.kind = 1 WHERE v.version IS NULL OR f.version > v.version OR f.version <= 0`},
		{"friends have no pending request", `SELECT COUNT(*) FROM friend_request q JOIN friendship f
			ON f.user_id = q.from_user AND f.friend_id = q.to_user AND f.status = 0 WHERE q.status = 0`},
		{"member counts", "SELECT COUNT(*) FROM `group` g WHERE g.member_count <> " +
			"(SELECT COUNT(*) FROM group_member m WHERE m.group_id = g.id AND m.status = 0) OR g.member_count > g.max_members"},
		{"member rows within the group's version", "SELECT COUNT(*) FROM group_member m JOIN `group` g ON g.id = m.group_id " +
			"WHERE m.version > g.version OR m.version <= 0"},
		{"one owner per group, the group's owner", "SELECT COUNT(*) FROM `group` g WHERE g.status = 0 AND " +
			"(SELECT COUNT(*) FROM group_member m WHERE m.group_id = g.id AND m.status = 0 AND m.role = 2 AND m.user_id = g.owner_id) <> 1 OR " +
			"(SELECT COUNT(*) FROM group_member m WHERE m.group_id = g.id AND m.status = 0 AND m.role = 2) <> 1"},
		{"group lists match memberships", `SELECT COUNT(*) FROM group_member m LEFT JOIN user_group ug
			ON ug.user_id = m.user_id AND ug.group_id = m.group_id AND ug.status = m.status
			WHERE ug.user_id IS NULL AND (m.status = 0 OR EXISTS (SELECT 1 FROM user_group x
			WHERE x.user_id = m.user_id AND x.group_id = m.group_id))`},
		{"group list rows within their list's version", `SELECT COUNT(*) FROM user_group ug LEFT JOIN list_version v
			ON v.user_id = ug.user_id AND v.kind = 2 WHERE v.version IS NULL OR ug.version > v.version OR ug.version <= 0`},
		{"min versions not above versions", "SELECT (SELECT COUNT(*) FROM list_version WHERE min_version > version) + " +
			"(SELECT COUNT(*) FROM `group` WHERE min_version > version)"},
	}
	for _, c := range checks {
		var n int
		if err := s.db.QueryRow(c.q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n != 0 {
			t.Errorf("invariant %q broken by %d rows", c.name, n)
		}
	}
}

// Package storetest is the conformance suite every store.Store
// implementation passes: Run it from the implementation's tests with a
// factory returning a fresh, empty, migrated store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/store"
)

// Run runs the suite. newStore must return a new empty store for each call
// and arrange its Close (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateAndLookup", testCreateAndLookup},
		{"DuplicateUsername", testDuplicateUsername},
		{"UsernameExactMatch", testUsernameExactMatch},
		{"UnknownUsers", testUnknownUsers},
		{"CreateUserInvalid", testCreateUserInvalid},
		{"UsersByIDs", testUsersByIDs},
		{"UpdateProfile", testUpdateProfile},
		{"SetPasswordHash", testSetPasswordHash},
		{"Devices", testDevices},
		{"DevicesInvalid", testDevicesInvalid},
		{"ConcurrentCreate", testConcurrentCreate},
		{"CanceledContext", testCanceledContext},
		{"MigrateIdempotent", testMigrateIdempotent},
	}
	tests = append(tests, relationTests...)
	tests = append(tests, groupTests...)
	tests = append(tests, messageTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustCreate(t *testing.T, s store.Store, username string) *store.User {
	t.Helper()
	u := &store.User{Username: username, PasswordHash: "$argon2id$hash-of-" + username, Nickname: "Nick " + username}
	id, err := s.CreateUser(ctx(t), u)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", username, err)
	}
	if id <= 0 || u.ID != id {
		t.Fatalf("CreateUser(%q) = id %d, u.ID %d", username, id, u.ID)
	}
	return u
}

func sameUser(t *testing.T, got, want *store.User) {
	t.Helper()
	if got == nil {
		t.Fatalf("got nil user, want %+v", want)
	}
	if got.ID != want.ID || got.Username != want.Username || got.PasswordHash != want.PasswordHash ||
		got.Nickname != want.Nickname || got.Avatar != want.Avatar || got.CreatedAt.UnixMilli() != want.CreatedAt.UnixMilli() {
		t.Fatalf("user = %+v, want %+v", got, want)
	}
}

func testCreateAndLookup(t *testing.T, s store.Store) {
	c := ctx(t)
	created := time.UnixMilli(1_750_000_000_123)
	tests := []store.User{
		{Username: "alice", PasswordHash: "h1", Nickname: "Alice", Avatar: "https://example.com/a.png", CreatedAt: created},
		{Username: "bob.b-2_x", PasswordHash: "h2"},
		{Username: strings.Repeat("z", store.MaxUsernameLen), PasswordHash: strings.Repeat("h", store.MaxPasswordHashLen),
			Nickname: strings.Repeat("名", 64), Avatar: strings.Repeat("a", store.MaxAvatarLen)},
	}
	before := time.Now().Add(-time.Second)
	for i := range tests {
		u := tests[i]
		id, err := s.CreateUser(c, &u)
		if err != nil {
			t.Fatalf("CreateUser(%q): %v", u.Username, err)
		}
		if id <= 0 || u.ID != id {
			t.Fatalf("CreateUser(%q): id %d, u.ID %d", u.Username, id, u.ID)
		}
		if tests[i].CreatedAt.IsZero() {
			if u.CreatedAt.Before(before) || u.CreatedAt.After(time.Now().Add(time.Second)) {
				t.Fatalf("CreateUser set CreatedAt %v, not now", u.CreatedAt)
			}
		} else if !u.CreatedAt.Equal(created) {
			t.Fatalf("CreatedAt changed: %v", u.CreatedAt)
		}
		byID, err := s.UserByID(c, id)
		if err != nil {
			t.Fatalf("UserByID(%d): %v", id, err)
		}
		sameUser(t, byID, &u)
		byName, err := s.UserByUsername(c, u.Username)
		if err != nil {
			t.Fatalf("UserByUsername(%q): %v", u.Username, err)
		}
		sameUser(t, byName, &u)
	}
}

func testDuplicateUsername(t *testing.T, s store.Store) {
	c := ctx(t)
	first := mustCreate(t, s, "carol")
	_, err := s.CreateUser(c, &store.User{Username: "carol", PasswordHash: "other"})
	if !errors.Is(err, store.ErrUsernameTaken) {
		t.Fatalf("duplicate CreateUser = %v, want ErrUsernameTaken", err)
	}
	got, err := s.UserByUsername(c, "carol")
	if err != nil {
		t.Fatal(err)
	}
	sameUser(t, got, first)
	second := mustCreate(t, s, "carol2")
	if second.ID == first.ID {
		t.Fatal("two users got the same id")
	}
}

// Usernames are compared byte for byte (the MySQL schema needs a binary
// collation); the domain code normalises case before calling the store.
func testUsernameExactMatch(t *testing.T, s store.Store) {
	mustCreate(t, s, "dave")
	if _, err := s.UserByUsername(ctx(t), "DAVE"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UserByUsername(DAVE) = %v, want ErrNotFound", err)
	}
	if _, err := s.UserByUsername(ctx(t), "dave "); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UserByUsername(\"dave \") = %v, want ErrNotFound", err)
	}
}

func testUnknownUsers(t *testing.T, s store.Store) {
	c := ctx(t)
	u := mustCreate(t, s, "erin")
	for _, id := range []int64{0, -1, u.ID + 1000, 1 << 62} {
		if _, err := s.UserByID(c, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByID(%d) = %v, want ErrNotFound", id, err)
		}
	}
	for _, name := range []string{"", "nobody", "erin2"} {
		if _, err := s.UserByUsername(c, name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UserByUsername(%q) = %v, want ErrNotFound", name, err)
		}
	}
}

func testCreateUserInvalid(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		u    *store.User
	}{
		{"nil", nil},
		{"empty username", &store.User{PasswordHash: "h"}},
		{"long username", &store.User{Username: strings.Repeat("a", store.MaxUsernameLen+1), PasswordHash: "h"}},
		{"empty hash", &store.User{Username: "frank"}},
		{"long hash", &store.User{Username: "frank", PasswordHash: strings.Repeat("h", store.MaxPasswordHashLen+1)}},
		{"long nickname", &store.User{Username: "frank", PasswordHash: "h", Nickname: strings.Repeat("n", store.MaxNicknameLen+1)}},
		{"bad utf8 nickname", &store.User{Username: "frank", PasswordHash: "h", Nickname: "\xff"}},
		{"long avatar", &store.User{Username: "frank", PasswordHash: "h", Avatar: strings.Repeat("a", store.MaxAvatarLen+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.CreateUser(ctx(t), tt.u); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("CreateUser = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := s.UserByUsername(ctx(t), "frank"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an invalid user was stored: %v", err)
	}
}

func testUsersByIDs(t *testing.T, s store.Store) {
	c := ctx(t)
	var users []*store.User
	for i := range 3 {
		users = append(users, mustCreate(t, s, fmt.Sprintf("user%d", i)))
	}
	many := make([]int64, 0, 1200)
	for i := range 1200 {
		many = append(many, users[i%3].ID+int64(i/3)*1_000_000)
	}
	tests := []struct {
		name string
		ids  []int64
		want []*store.User
	}{
		{"nil", nil, nil},
		{"one", []int64{users[1].ID}, users[1:2]},
		{"all with unknown and duplicates", []int64{users[2].ID, 999_999, users[0].ID, users[2].ID, users[1].ID, -5}, users},
		{"over one query's worth", many, users},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.UsersByIDs(c, tt.ids)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d users, want %d", len(got), len(tt.want))
			}
			for _, w := range tt.want {
				sameUser(t, got[w.ID], w)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func testUpdateProfile(t *testing.T, s store.Store) {
	c := ctx(t)
	u := mustCreate(t, s, "gina")
	other := mustCreate(t, s, "hank")
	steps := []struct {
		name       string
		p          store.ProfileUpdate
		nick, avat string
	}{
		{"nothing", store.ProfileUpdate{}, u.Nickname, ""},
		{"nickname", store.ProfileUpdate{Nickname: ptr("Gina G")}, "Gina G", ""},
		{"avatar", store.ProfileUpdate{Avatar: ptr("https://x/y.png")}, "Gina G", "https://x/y.png"},
		{"both", store.ProfileUpdate{Nickname: ptr("吉娜"), Avatar: ptr("")}, "吉娜", ""},
		{"clear nickname", store.ProfileUpdate{Nickname: ptr("")}, "", ""},
	}
	for _, st := range steps {
		if err := s.UpdateProfile(c, u.ID, st.p); err != nil {
			t.Fatalf("%s: UpdateProfile: %v", st.name, err)
		}
		got, err := s.UserByID(c, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Nickname != st.nick || got.Avatar != st.avat || got.Username != u.Username || got.PasswordHash != u.PasswordHash {
			t.Fatalf("%s: profile = %+v, want nickname %q avatar %q", st.name, got, st.nick, st.avat)
		}
	}
	if got, _ := s.UserByID(c, other.ID); got == nil || got.Nickname != other.Nickname {
		t.Fatalf("another user's profile changed: %+v", got)
	}
	if err := s.UpdateProfile(c, other.ID+1000, store.ProfileUpdate{Nickname: ptr("x")}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateProfile(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.UpdateProfile(c, u.ID, store.ProfileUpdate{Nickname: ptr(strings.Repeat("n", store.MaxNicknameLen+1))}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("UpdateProfile(long nickname) = %v, want ErrInvalid", err)
	}
	if err := s.UpdateProfile(c, u.ID, store.ProfileUpdate{Avatar: ptr(strings.Repeat("a", store.MaxAvatarLen+1))}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("UpdateProfile(long avatar) = %v, want ErrInvalid", err)
	}
}

func testSetPasswordHash(t *testing.T, s store.Store) {
	c := ctx(t)
	u := mustCreate(t, s, "ivan")
	if err := s.SetPasswordHash(c, u.ID, "new-hash"); err != nil {
		t.Fatal(err)
	}
	got, err := s.UserByUsername(c, "ivan")
	if err != nil {
		t.Fatal(err)
	}
	if got.PasswordHash != "new-hash" || got.Nickname != u.Nickname {
		t.Fatalf("after SetPasswordHash: %+v", got)
	}
	if err := s.SetPasswordHash(c, u.ID+1000, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetPasswordHash(unknown) = %v", err)
	}
	if err := s.SetPasswordHash(c, u.ID, ""); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("SetPasswordHash(empty) = %v", err)
	}
}

func dev(uid int64, id, platform string, at time.Time) store.Device {
	return store.Device{UserID: uid, DeviceID: id, Platform: platform, LastLoginAt: at}
}

func testDevices(t *testing.T, s store.Store) {
	c := ctx(t)
	u := mustCreate(t, s, "judy")
	other := mustCreate(t, s, "karl")
	t0 := time.UnixMilli(1_750_000_000_000)
	steps := []struct {
		d    store.Device
		want []store.Device // expected Devices(u) after the step
	}{
		{store.Device{UserID: u.ID, DeviceID: "phone", Platform: "ios", LastLoginAt: t0},
			[]store.Device{dev(u.ID, "phone", "ios", t0)}},
		{store.Device{UserID: u.ID, DeviceID: "laptop", Platform: "web", LastLoginAt: t0.Add(time.Minute)},
			[]store.Device{dev(u.ID, "laptop", "web", t0.Add(time.Minute)), dev(u.ID, "phone", "ios", t0)}},
		// Same device again: updated in place, moves to the front.
		{store.Device{UserID: u.ID, DeviceID: "phone", Platform: "android", LastLoginAt: t0.Add(2 * time.Minute)},
			[]store.Device{dev(u.ID, "phone", "android", t0.Add(2*time.Minute)), dev(u.ID, "laptop", "web", t0.Add(time.Minute))}},
		// Another user's device of the same name is separate.
		{store.Device{UserID: other.ID, DeviceID: "phone", Platform: "pc", LastLoginAt: t0.Add(3 * time.Minute)},
			[]store.Device{dev(u.ID, "phone", "android", t0.Add(2*time.Minute)), dev(u.ID, "laptop", "web", t0.Add(time.Minute))}},
	}
	for i, st := range steps {
		if err := s.UpsertDevice(c, st.d); err != nil {
			t.Fatalf("step %d: UpsertDevice: %v", i, err)
		}
		got, err := s.Devices(c, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(st.want) {
			t.Fatalf("step %d: %d devices, want %d: %+v", i, len(got), len(st.want), got)
		}
		for j := range got {
			g, w := got[j], st.want[j]
			if g.UserID != w.UserID || g.DeviceID != w.DeviceID || g.Platform != w.Platform || !g.LastLoginAt.Equal(w.LastLoginAt) {
				t.Fatalf("step %d: device %d = %+v, want %+v", i, j, g, w)
			}
		}
	}
	od, err := s.Devices(c, other.ID)
	if err != nil || len(od) != 1 || od[0].Platform != "pc" {
		t.Fatalf("other user's devices = %+v, %v", od, err)
	}
	if ds, err := s.Devices(c, other.ID+1000); err != nil || len(ds) != 0 {
		t.Fatalf("Devices(unknown) = %+v, %v; want none", ds, err)
	}
	if err := s.UpsertDevice(c, store.Device{UserID: other.ID + 1000, DeviceID: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpsertDevice(unknown user) = %v, want ErrNotFound", err)
	}
	// A zero LastLoginAt means now.
	before := time.Now().Add(-time.Second)
	if err := s.UpsertDevice(c, store.Device{UserID: other.ID, DeviceID: "tablet"}); err != nil {
		t.Fatal(err)
	}
	od, _ = s.Devices(c, other.ID)
	if len(od) != 2 || od[0].DeviceID != "tablet" || od[0].LastLoginAt.Before(before) {
		t.Fatalf("devices after a zero-time upsert: %+v", od)
	}
}

func testDevicesInvalid(t *testing.T, s store.Store) {
	u := mustCreate(t, s, "lena")
	tests := []store.Device{
		{UserID: 0, DeviceID: "d"},
		{UserID: u.ID, DeviceID: ""},
		{UserID: u.ID, DeviceID: strings.Repeat("d", store.MaxDeviceIDLen+1)},
		{UserID: u.ID, DeviceID: "d", Platform: strings.Repeat("p", store.MaxPlatformLen+1)},
	}
	for _, d := range tests {
		if err := s.UpsertDevice(ctx(t), d); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("UpsertDevice(%+v) = %v, want ErrInvalid", d, err)
		}
	}
}

func testConcurrentCreate(t *testing.T, s store.Store) {
	c := ctx(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateUser(c, &store.User{Username: "same", PasswordHash: fmt.Sprint("h", i)})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrUsernameTaken):
			t.Fatalf("concurrent CreateUser: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent creations of one username succeeded, want 1", ok)
	}
	ids := make([]int64, n)
	for i := range n {
		wg.Go(func() {
			id, err := s.CreateUser(c, &store.User{Username: fmt.Sprint("many", i), PasswordHash: "h"})
			if err != nil {
				t.Errorf("CreateUser(many%d): %v", i, err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	got, err := s.UsersByIDs(c, ids)
	if err != nil || len(got) != n {
		t.Fatalf("UsersByIDs after concurrent creation: %d users, %v", len(got), err)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	u := mustCreate(t, s, "mike")
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.UserByID(c, u.ID); !errors.Is(err, context.Canceled) {
		t.Errorf("UserByID(canceled) = %v, want context.Canceled", err)
	}
	if _, err := s.CreateUser(c, &store.User{Username: "nina", PasswordHash: "h"}); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateUser(canceled) = %v, want context.Canceled", err)
	}
	if _, err := s.UserByUsername(ctx(t), "nina"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a canceled CreateUser stored its user: %v", err)
	}
}

func testMigrateIdempotent(t *testing.T, s store.Store) {
	u := mustCreate(t, s, "olga")
	for range 2 {
		if err := s.Migrate(ctx(t)); err != nil {
			t.Fatalf("Migrate on a migrated store: %v", err)
		}
	}
	got, err := s.UserByID(ctx(t), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameUser(t, got, u)
}

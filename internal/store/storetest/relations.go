package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/store"
)

// relationTests are the friends, blocks and tombstone tests.
var relationTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"FriendRequestMerge", testFriendRequestMerge},
	{"FriendRequestInvalid", testFriendRequestInvalid},
	{"FriendRequestsList", testFriendRequestsList},
	{"AcceptFriendRequest", testAcceptFriendRequest},
	{"RejectFriendRequest", testRejectFriendRequest},
	{"FriendRemark", testFriendRemark},
	{"DeleteFriend", testDeleteFriend},
	{"FriendChanges", testFriendChanges},
	{"Blocks", testBlocks},
	{"PruneTombstones", testPruneTombstones},
	{"ConcurrentFriendRequests", testConcurrentFriendRequests},
}

// users creates n users named prefix0..prefixN-1 and returns their ids.
func users(t *testing.T, s store.Store, prefix string, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range n {
		ids[i] = mustCreate(t, s, fmt.Sprint(prefix, i)).ID
	}
	return ids
}

// befriend makes a and b friends through a request and its acceptance.
func befriend(t *testing.T, s store.Store, a, b int64) {
	t.Helper()
	req, _, err := s.CreateFriendRequest(ctx(t), a, b, "hi")
	if err != nil {
		t.Fatalf("CreateFriendRequest(%d, %d): %v", a, b, err)
	}
	if _, err := s.ResolveFriendRequest(ctx(t), req.ID, true); err != nil {
		t.Fatalf("accept %d: %v", req.ID, err)
	}
}

// friendDelta renders friend changes as friend ids, negative for tombstones.
func friendDelta(items []store.Friend) []int64 {
	out := make([]int64, len(items))
	for i, f := range items {
		out[i] = f.FriendID
		if f.Deleted {
			out[i] = -f.FriendID
		}
	}
	return out
}

func sorted(ids []int64) []int64 {
	c := slices.Clone(ids)
	slices.Sort(c)
	return c
}

// checkChanges checks the Full flag and the items (as a set: the order of
// rows changed in one version is not specified) of a Changes answer.
func checkChanges(t *testing.T, what string, full bool, gotFull bool, got, want []int64) {
	t.Helper()
	if gotFull != full {
		t.Fatalf("%s: Full = %v, want %v (items %v)", what, gotFull, full, got)
	}
	if !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("%s: items %v, want %v", what, got, want)
	}
}

func friendChanges(t *testing.T, s store.Store, user, since int64) store.Changes[store.Friend] {
	t.Helper()
	ch, err := s.FriendChanges(ctx(t), user, since)
	if err != nil {
		t.Fatalf("FriendChanges(%d, %d): %v", user, since, err)
	}
	for i := 1; i < len(ch.Items); i++ {
		if !ch.Full && ch.Items[i].Version < ch.Items[i-1].Version {
			t.Fatalf("FriendChanges(%d, %d): items not in version order: %+v", user, since, ch.Items)
		}
	}
	for _, f := range ch.Items {
		if f.UserID != user || f.Version > ch.Version || (!ch.Full && f.Version <= since) || (ch.Full && f.Deleted) {
			t.Fatalf("FriendChanges(%d, %d) = version %d, full %v, bad item %+v", user, since, ch.Version, ch.Full, f)
		}
	}
	return ch
}

func testFriendRequestMerge(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "merge", 2)
	a, b := u[0], u[1]
	before := time.Now().Add(-time.Second)
	first, merged, err := s.CreateFriendRequest(c, a, b, "hello")
	if err != nil || merged {
		t.Fatalf("first request: %+v, merged %v, %v", first, merged, err)
	}
	if first.ID <= 0 || first.FromUser != a || first.ToUser != b || first.Message != "hello" ||
		first.Status != store.RequestPending || first.CreatedAt.Before(before) || first.UpdatedAt.Before(first.CreatedAt) {
		t.Fatalf("first request = %+v", first)
	}
	second, merged, err := s.CreateFriendRequest(c, a, b, "hello again")
	if err != nil || !merged {
		t.Fatalf("second request: merged %v, %v", merged, err)
	}
	if second.ID != first.ID || second.Message != "hello again" || second.Status != store.RequestPending ||
		!second.CreatedAt.Equal(first.CreatedAt) || second.UpdatedAt.Before(first.UpdatedAt) {
		t.Fatalf("merged request = %+v, first %+v", second, first)
	}
	got, err := s.FriendRequest(c, first.ID)
	if err != nil || got.Message != "hello again" || got.ID != first.ID || !got.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("FriendRequest after merge = %+v, %v", got, err)
	}
	// The other direction is a request of its own.
	rev, merged, err := s.CreateFriendRequest(c, b, a, "")
	if err != nil || merged || rev.ID == first.ID || rev.FromUser != b {
		t.Fatalf("reverse request = %+v, merged %v, %v", rev, merged, err)
	}
	in, out, err := s.FriendRequests(c, b, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].ID != first.ID || in[0].Message != "hello again" || len(out) != 1 || out[0].ID != rev.ID {
		t.Fatalf("b's requests: in %+v, out %+v", in, out)
	}
}

func testFriendRequestInvalid(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "inval", 2)
	a, b := u[0], u[1]
	tests := []struct {
		name     string
		from, to int64
		msg      string
		want     error
	}{
		{"to oneself", a, a, "", store.ErrInvalid},
		{"long message", a, b, strings.Repeat("m", store.MaxRequestMsgLen+1), store.ErrInvalid},
		{"bad utf8", a, b, "\xff\xfe", store.ErrInvalid},
		{"unknown recipient", a, b + 1000, "", store.ErrNotFound},
		{"unknown sender", b + 1000, a, "", store.ErrNotFound},
		{"zero id", 0, a, "", store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := s.CreateFriendRequest(c, tt.from, tt.to, tt.msg); !errors.Is(err, tt.want) {
				t.Fatalf("CreateFriendRequest = %v, want %v", err, tt.want)
			}
		})
	}
	if in, out, err := s.FriendRequests(c, a, 10); err != nil || len(in)+len(out) != 0 {
		t.Fatalf("a refused request was stored: %+v %+v %v", in, out, err)
	}
	if _, _, err := s.CreateFriendRequest(c, a, b, strings.Repeat("语", store.MaxRequestMsgLen/3)); err != nil {
		t.Fatalf("a request at the message limit: %v", err)
	}
	if _, err := s.FriendRequest(c, 1<<40); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FriendRequest(unknown) = %v", err)
	}
	if _, err := s.ResolveFriendRequest(c, 1<<40, true); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ResolveFriendRequest(unknown) = %v", err)
	}
	for _, limit := range []int{0, -1} {
		if _, _, err := s.FriendRequests(c, a, limit); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("FriendRequests(limit %d) = %v, want ErrInvalid", limit, err)
		}
	}
	if in, out, err := s.FriendRequests(c, b+1000, 10); err != nil || len(in)+len(out) != 0 {
		t.Errorf("FriendRequests(unknown user) = %+v %+v %v", in, out, err)
	}
}

func testFriendRequestsList(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "list", 5)
	a := u[0]
	var sent []int64
	for _, to := range u[1:4] {
		r, _, err := s.CreateFriendRequest(c, a, to, fmt.Sprint("to ", to))
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, r.ID)
	}
	recv, _, err := s.CreateFriendRequest(c, u[4], a, "from 4")
	if err != nil {
		t.Fatal(err)
	}
	ids := func(rs []store.FriendRequest) []int64 {
		var out []int64
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	tests := []struct {
		limit   int
		in, out []int64
	}{
		{1, []int64{recv.ID}, []int64{sent[2]}},
		{2, []int64{recv.ID}, []int64{sent[2], sent[1]}},
		{100, []int64{recv.ID}, []int64{sent[2], sent[1], sent[0]}},
	}
	for _, tt := range tests {
		in, out, err := s.FriendRequests(c, a, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(in), tt.in) || !slices.Equal(ids(out), tt.out) {
			t.Fatalf("limit %d: in %v out %v, want %v %v", tt.limit, ids(in), ids(out), tt.in, tt.out)
		}
	}
	// A merged request is the most recently updated one. (Wait for the
	// clock to move so that its time really is later.)
	waitNextMilli(t)
	if _, merged, err := s.CreateFriendRequest(c, a, u[1], "again"); err != nil || !merged {
		t.Fatalf("merge: %v %v", merged, err)
	}
	_, out, err := s.FriendRequests(c, a, 1)
	if err != nil || len(out) != 1 || out[0].ID != sent[0] || out[0].Message != "again" {
		t.Fatalf("after a merge the newest outgoing is %+v, %v; want request %d", out, err, sent[0])
	}
	// Resolved requests stay listed with their status.
	if _, err := s.ResolveFriendRequest(c, recv.ID, false); err != nil {
		t.Fatal(err)
	}
	in, _, err := s.FriendRequests(c, a, 10)
	if err != nil || len(in) != 1 || in[0].Status != store.RequestRejected {
		t.Fatalf("incoming after reject = %+v, %v", in, err)
	}
}

// waitNextMilli returns once the wall clock is at least one millisecond
// later than when it was called (stored times have millisecond precision).
func waitNextMilli(t *testing.T) {
	t.Helper()
	start := time.Now().UnixMilli()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().UnixMilli() <= start {
		if time.Now().After(deadline) {
			t.Fatal("the clock does not move")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func testAcceptFriendRequest(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "acc", 3)
	a, b, x := u[0], u[1], u[2]
	req, _, err := s.CreateFriendRequest(c, a, b, "be my friend")
	if err != nil {
		t.Fatal(err)
	}
	rev, _, err := s.CreateFriendRequest(c, b, a, "you too")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := s.CreateFriendRequest(c, x, b, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Friend(c, a, b); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Friend before accepting = %v", err)
	}
	before := time.Now().Add(-time.Second)
	got, err := s.ResolveFriendRequest(c, req.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != req.ID || got.Status != store.RequestAccepted || got.FromUser != a || got.ToUser != b {
		t.Fatalf("accepted request = %+v", got)
	}
	for _, p := range [][2]int64{{a, b}, {b, a}} {
		f, err := s.Friend(c, p[0], p[1])
		if err != nil {
			t.Fatalf("Friend(%d, %d) after accept: %v", p[0], p[1], err)
		}
		if f.UserID != p[0] || f.FriendID != p[1] || f.Remark != "" || f.Deleted || f.Version <= 0 || f.CreatedAt.Before(before) {
			t.Fatalf("Friend(%d, %d) = %+v", p[0], p[1], f)
		}
		ch := friendChanges(t, s, p[0], 0)
		checkChanges(t, "friends after accept", true, ch.Full, friendDelta(ch.Items), []int64{p[1]})
		if ch.Version != f.Version {
			t.Fatalf("list version %d, friend row version %d", ch.Version, f.Version)
		}
	}
	// The request in the other direction was accepted with it; an
	// unrelated one was not.
	for _, tt := range []struct {
		id   int64
		want store.FriendRequestStatus
	}{{req.ID, store.RequestAccepted}, {rev.ID, store.RequestAccepted}, {other.ID, store.RequestPending}} {
		r, err := s.FriendRequest(c, tt.id)
		if err != nil || r.Status != tt.want {
			t.Fatalf("request %d = %+v, %v; want status %d", tt.id, r, err, tt.want)
		}
	}
	// Resolving again, either way, conflicts.
	for _, id := range []int64{req.ID, rev.ID} {
		for _, accept := range []bool{true, false} {
			if _, err := s.ResolveFriendRequest(c, id, accept); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("ResolveFriendRequest(%d, %v) again = %v, want ErrConflict", id, accept, err)
			}
		}
	}
	// A request between friends conflicts, in both directions.
	for _, p := range [][2]int64{{a, b}, {b, a}} {
		if _, _, err := s.CreateFriendRequest(c, p[0], p[1], ""); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CreateFriendRequest(%d, %d) between friends = %v, want ErrConflict", p[0], p[1], err)
		}
	}
	if _, err := s.Friend(c, x, b); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Friend(x, b) = %v, want ErrNotFound", err)
	}
}

func testRejectFriendRequest(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "rej", 2)
	a, b := u[0], u[1]
	req, _, err := s.CreateFriendRequest(c, a, b, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ResolveFriendRequest(c, req.ID, false)
	if err != nil || got.Status != store.RequestRejected {
		t.Fatalf("reject = %+v, %v", got, err)
	}
	if _, err := s.Friend(c, a, b); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Friend after reject = %v", err)
	}
	if ch := friendChanges(t, s, b, 0); len(ch.Items) != 0 {
		t.Fatalf("b's friends after reject = %+v", ch.Items)
	}
	if _, err := s.ResolveFriendRequest(c, req.ID, true); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("accept after reject = %v, want ErrConflict", err)
	}
	// Asking again makes a new pending request.
	again, merged, err := s.CreateFriendRequest(c, a, b, "please")
	if err != nil || merged || again.ID == req.ID || again.Status != store.RequestPending {
		t.Fatalf("request after a rejection = %+v, merged %v, %v", again, merged, err)
	}
}

func testFriendRemark(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "remark", 3)
	a, b, x := u[0], u[1], u[2]
	befriend(t, s, a, b)
	tests := []struct {
		user, friend int64
		remark       string
		want         error
	}{
		{a, b, "Bobby", nil},
		{b, a, "阿", nil},
		{a, b, strings.Repeat("r", store.MaxRemarkLen), nil},
		{a, b, "", nil},
		{a, b, strings.Repeat("r", store.MaxRemarkLen+1), store.ErrInvalid},
		{a, b, "\xc3", store.ErrInvalid},
		{a, x, "stranger", store.ErrNotFound},
		{a, a, "me", store.ErrNotFound},
		{a, b + 1000, "ghost", store.ErrNotFound},
	}
	remarks := map[[2]int64]string{{a, b}: "", {b, a}: ""}
	for i, tt := range tests {
		v0 := friendChanges(t, s, tt.user, 0).Version
		err := s.SetFriendRemark(c, tt.user, tt.friend, tt.remark)
		if !errors.Is(err, tt.want) {
			t.Fatalf("#%d SetFriendRemark(%d, %d) = %v, want %v", i, tt.user, tt.friend, err, tt.want)
		}
		if err == nil {
			remarks[[2]int64{tt.user, tt.friend}] = tt.remark
			ch := friendChanges(t, s, tt.user, v0)
			checkChanges(t, "changes after a remark", false, ch.Full, friendDelta(ch.Items), []int64{tt.friend})
			if ch.Items[0].Remark != tt.remark || ch.Version <= v0 {
				t.Fatalf("#%d: changed row %+v, version %d after %d", i, ch.Items[0], ch.Version, v0)
			}
		} else if v := friendChanges(t, s, tt.user, 0).Version; v != v0 {
			t.Fatalf("#%d: a refused remark moved the version from %d to %d", i, v0, v)
		}
		for p, want := range remarks {
			f, err := s.Friend(c, p[0], p[1])
			if err != nil || f.Remark != want {
				t.Fatalf("#%d: Friend(%d, %d) = %+v, %v; want remark %q", i, p[0], p[1], f, err, want)
			}
		}
	}
}

func testDeleteFriend(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "del", 3)
	a, b, x := u[0], u[1], u[2]
	befriend(t, s, a, b)
	befriend(t, s, x, a)
	if err := s.SetFriendRemark(c, a, b, "old remark"); err != nil {
		t.Fatal(err)
	}
	va, vb := friendChanges(t, s, a, 0).Version, friendChanges(t, s, b, 0).Version
	if err := s.DeleteFriend(c, a, b); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]int64{{a, b}, {b, a}} {
		if _, err := s.Friend(c, p[0], p[1]); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Friend(%d, %d) after delete = %v", p[0], p[1], err)
		}
	}
	if _, err := s.Friend(c, a, x); err != nil {
		t.Fatalf("another friendship was deleted: %v", err)
	}
	cha := friendChanges(t, s, a, va)
	checkChanges(t, "a's changes after delete", false, cha.Full, friendDelta(cha.Items), []int64{-b})
	chb := friendChanges(t, s, b, vb)
	checkChanges(t, "b's changes after delete", false, chb.Full, friendDelta(chb.Items), []int64{-a})
	full := friendChanges(t, s, a, 0)
	checkChanges(t, "a's full list after delete", true, full.Full, friendDelta(full.Items), []int64{x})
	for _, p := range [][2]int64{{a, b}, {b, a}, {a, a}, {a, x + 1000}} {
		if err := s.DeleteFriend(c, p[0], p[1]); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("DeleteFriend(%d, %d) of non-friends = %v, want ErrNotFound", p[0], p[1], err)
		}
	}
	if v := friendChanges(t, s, a, 0).Version; v != cha.Version {
		t.Fatalf("refused deletions moved a's version from %d to %d", cha.Version, v)
	}
	// Friends again: a fresh friendship, the old remark gone.
	befriend(t, s, b, a)
	f, err := s.Friend(c, a, b)
	if err != nil || f.Remark != "" || f.Deleted {
		t.Fatalf("Friend after befriending again = %+v, %v", f, err)
	}
	ch := friendChanges(t, s, a, cha.Version)
	checkChanges(t, "a's changes after befriending again", false, ch.Full, friendDelta(ch.Items), []int64{b})
}

func testFriendChanges(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "chg", 4)
	a := u[0]
	empty := friendChanges(t, s, a, 0)
	if !empty.Full || len(empty.Items) != 0 {
		t.Fatalf("changes of a user without friends = %+v", empty)
	}
	var versions []int64
	for _, f := range u[1:] {
		befriend(t, s, a, f)
		versions = append(versions, friendChanges(t, s, a, 0).Version)
	}
	if err := s.DeleteFriend(c, a, u[2]); err != nil {
		t.Fatal(err)
	}
	cur := friendChanges(t, s, a, 0).Version
	if !slices.IsSorted(versions) || versions[0] <= 0 || cur <= versions[2] {
		t.Fatalf("versions %v then %d are not increasing", versions, cur)
	}
	tests := []struct {
		name  string
		since int64
		full  bool
		want  []int64
	}{
		{"since 0", 0, true, []int64{u[1], u[3]}},
		{"negative", -1, true, []int64{u[1], u[3]}},
		{"since the first friend", versions[0], false, []int64{-u[2], u[3]}},
		{"since the second friend", versions[1], false, []int64{-u[2], u[3]}},
		{"since the third friend", versions[2], false, []int64{-u[2]}},
		{"since current", cur, false, nil},
		{"ahead of the store", cur + 1, true, []int64{u[1], u[3]}},
		{"far ahead", cur + 1_000_000, true, []int64{u[1], u[3]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := friendChanges(t, s, a, tt.since)
			checkChanges(t, tt.name, tt.full, ch.Full, friendDelta(ch.Items), tt.want)
			if ch.Version != cur {
				t.Fatalf("Version = %d, want %d", ch.Version, cur)
			}
		})
	}
	// Another user's list is versioned on its own.
	if ch := friendChanges(t, s, u[1], 0); ch.Version <= 0 || len(ch.Items) != 1 {
		t.Fatalf("u1's changes = %+v", ch)
	}
	if ch := friendChanges(t, s, u[3]+1000, 5); !ch.Full || len(ch.Items) != 0 || ch.Version != 0 {
		t.Fatalf("changes of an unknown user = %+v", ch)
	}
}

func testBlocks(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "blk", 3)
	a, b, x := u[0], u[1], u[2]
	isBlocked := func(from, to int64, want bool) {
		t.Helper()
		got, err := s.IsBlocked(c, from, to)
		if err != nil || got != want {
			t.Fatalf("IsBlocked(%d, %d) = %v, %v; want %v", from, to, got, err, want)
		}
	}
	list := func(user int64, want ...int64) []store.Block {
		t.Helper()
		bs, err := s.BlockList(c, user)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, bl := range bs {
			if bl.UserID != user || bl.CreatedAt.IsZero() {
				t.Fatalf("BlockList(%d) entry %+v", user, bl)
			}
			got = append(got, bl.BlockedID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("BlockList(%d) = %v, want %v", user, got, want)
		}
		return bs
	}
	isBlocked(a, b, false)
	list(a)
	if err := s.BlockUser(c, a, b); err != nil {
		t.Fatal(err)
	}
	isBlocked(a, b, true)
	isBlocked(b, a, false) // a block has a direction
	first := list(a, b)
	waitNextMilli(t)
	if err := s.BlockUser(c, a, b); err != nil {
		t.Fatalf("blocking twice: %v", err)
	}
	if again := list(a, b); !again[0].CreatedAt.Equal(first[0].CreatedAt) {
		t.Fatalf("blocking twice changed CreatedAt: %v -> %v", first[0].CreatedAt, again[0].CreatedAt)
	}
	if err := s.BlockUser(c, a, x); err != nil {
		t.Fatal(err)
	}
	list(a, x, b) // newest first
	list(b)
	for _, tt := range []struct {
		user, blocked int64
		want          error
	}{
		{a, a, store.ErrInvalid},
		{a, x + 1000, store.ErrNotFound},
		{x + 1000, a, store.ErrNotFound},
	} {
		if err := s.BlockUser(c, tt.user, tt.blocked); !errors.Is(err, tt.want) {
			t.Fatalf("BlockUser(%d, %d) = %v, want %v", tt.user, tt.blocked, err, tt.want)
		}
	}
	for range 2 {
		if err := s.UnblockUser(c, a, b); err != nil {
			t.Fatalf("UnblockUser: %v", err)
		}
		isBlocked(a, b, false)
		list(a, x)
	}
	if err := s.UnblockUser(c, x+1000, a); err != nil {
		t.Fatalf("UnblockUser(unknown) = %v", err)
	}
	isBlocked(x+1000, a, false)
}

func testPruneTombstones(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "prune", 4)
	a, b, x, m := u[0], u[1], u[2], u[3]
	befriend(t, s, a, b)
	befriend(t, s, a, x)
	if err := s.SetFriendRemark(c, x, a, "two versions for x"); err != nil {
		t.Fatal(err)
	}
	g := &store.Group{OwnerID: a, Name: "pruned", MaxMembers: 10}
	gid, err := s.CreateGroup(c, g, []int64{m, b})
	if err != nil {
		t.Fatal(err)
	}
	fv := friendChanges(t, s, a, 0).Version
	mv := memberChanges(t, s, gid, 0).Version
	gv := userGroupChanges(t, s, m, 0).Version
	if err := s.DeleteFriend(c, a, b); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveMember(c, gid, m); err != nil {
		t.Fatal(err)
	}
	// Tombstones: a->b, b->a, the member m and m's group entry.
	const tombstones = 4

	if _, err := s.PruneTombstones(c, time.Now().Add(time.Hour), 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("PruneTombstones(limit 0) = %v, want ErrInvalid", err)
	}
	n, err := s.PruneTombstones(c, time.Now().Add(-time.Hour), 100)
	if err != nil || n != 0 {
		t.Fatalf("pruning tombstones older than an hour ago = %d, %v; want 0", n, err)
	}
	ch := friendChanges(t, s, a, fv)
	checkChanges(t, "before pruning", false, ch.Full, friendDelta(ch.Items), []int64{-b})

	// Prune everything, one row at a time.
	total := 0
	for i := 0; ; i++ {
		n, err := s.PruneTombstones(c, time.Now().Add(time.Hour), 1)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n < 1 {
			break
		}
		if i > tombstones {
			t.Fatalf("PruneTombstones keeps returning rows (%d so far)", total)
		}
	}
	if total != tombstones {
		t.Fatalf("pruned %d tombstones, want %d", total, tombstones)
	}

	// "Since" before the pruned changes is too old: full lists.
	fch := friendChanges(t, s, a, fv)
	checkChanges(t, "friends since a pruned version", true, fch.Full, friendDelta(fch.Items), []int64{x})
	mch := memberChanges(t, s, gid, mv)
	checkChanges(t, "members since a pruned version", true, mch.Full, memberDelta(mch.Items), []int64{a, b})
	gch := userGroupChanges(t, s, m, gv)
	checkChanges(t, "groups since a pruned version", true, gch.Full, groupDelta(gch.Items), nil)
	// Since the current versions: still incremental, and empty.
	for name, full := range map[string]bool{
		"friends": friendChanges(t, s, a, fch.Version).Full,
		"members": memberChanges(t, s, gid, mch.Version).Full,
		"groups":  userGroupChanges(t, s, m, gch.Version).Full,
	} {
		if full {
			t.Fatalf("%s since the current version after pruning is a full list", name)
		}
	}
	// b's list lost its tombstone too; x's list had none and is untouched.
	xv := friendChanges(t, s, x, 0).Version
	if ch := friendChanges(t, s, x, xv-1); ch.Full {
		t.Fatalf("a list without tombstones became full-only after pruning: %+v", ch)
	}
	// Life goes on: new changes after the pruning are incremental.
	befriend(t, s, b, a)
	ch = friendChanges(t, s, a, fch.Version)
	checkChanges(t, "after pruning and befriending again", false, ch.Full, friendDelta(ch.Items), []int64{b})
	if _, err := s.AddMembers(c, gid, []int64{m}, store.RoleMember); err != nil {
		t.Fatal(err)
	}
	mch2 := memberChanges(t, s, gid, mch.Version)
	checkChanges(t, "members after pruning and rejoining", false, mch2.Full, memberDelta(mch2.Items), []int64{m})
	if n, err := s.PruneTombstones(c, time.Now().Add(time.Hour), 100); err != nil || n != 0 {
		t.Fatalf("pruning with no tombstones left = %d, %v", n, err)
	}
}

func testConcurrentFriendRequests(t *testing.T, s store.Store) {
	c := ctx(t)
	u := users(t, s, "conc", 2)
	a, b := u[0], u[1]
	const n = 16
	var wg sync.WaitGroup
	reqs := make([]*store.FriendRequest, n)
	merged := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { reqs[i], merged[i], errs[i] = s.CreateFriendRequest(c, a, b, fmt.Sprint("msg ", i)) })
	}
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent CreateFriendRequest: %v", errs[i])
		}
		if !merged[i] {
			fresh++
		}
		if reqs[i].ID != reqs[0].ID {
			t.Fatalf("concurrent requests got ids %d and %d", reqs[0].ID, reqs[i].ID)
		}
	}
	if fresh != 1 {
		t.Fatalf("%d concurrent requests were not merged, want 1", fresh)
	}
	in, _, err := s.FriendRequests(c, b, 100)
	if err != nil || len(in) != 1 {
		t.Fatalf("b's incoming after concurrent requests = %d, %v", len(in), err)
	}
	// Concurrent resolutions: exactly one wins.
	ok := 0
	var mu sync.Mutex
	for i := range n {
		wg.Go(func() {
			_, err := s.ResolveFriendRequest(c, reqs[0].ID, i%2 == 0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("concurrent ResolveFriendRequest: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d concurrent resolutions succeeded, want 1", ok)
	}
	r, err := s.FriendRequest(c, reqs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	_, ferr := s.Friend(c, b, a)
	if (r.Status == store.RequestAccepted) != (ferr == nil) {
		t.Fatalf("request status %d but Friend(b, a) = %v", r.Status, ferr)
	}
}

package relcache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"

	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/relcache/cachetest"
	"github.com/goimdev/goim/internal/store"
)

// fakeRelations implements relcache.Relations: every call returns err and
// the canned results; calls are recorded by name.
type fakeRelations struct {
	err   error
	req   *store.FriendRequest // returned by ResolveFriendRequest and FriendRequest
	reqOK bool                 // FriendRequest finds req
	calls []string
}

func (f *fakeRelations) call(name string) { f.calls = append(f.calls, name) }

func (f *fakeRelations) CreateFriendRequest(context.Context, int64, int64, string) (*store.FriendRequest, bool, error) {
	f.call("CreateFriendRequest")
	return f.req, false, f.err
}
func (f *fakeRelations) FriendRequest(context.Context, int64) (*store.FriendRequest, error) {
	f.call("FriendRequest")
	if !f.reqOK {
		return nil, store.ErrNotFound
	}
	return f.req, nil
}
func (f *fakeRelations) FriendRequests(context.Context, int64, int) ([]store.FriendRequest, []store.FriendRequest, error) {
	f.call("FriendRequests")
	return nil, nil, f.err
}
func (f *fakeRelations) ResolveFriendRequest(context.Context, int64, bool) (*store.FriendRequest, error) {
	f.call("ResolveFriendRequest")
	if f.err != nil {
		return nil, f.err
	}
	return f.req, nil
}
func (f *fakeRelations) Friend(context.Context, int64, int64) (*store.Friend, error) {
	f.call("Friend")
	return nil, f.err
}
func (f *fakeRelations) FriendChanges(context.Context, int64, int64) (store.Changes[store.Friend], error) {
	f.call("FriendChanges")
	return store.Changes[store.Friend]{}, f.err
}
func (f *fakeRelations) SetFriendRemark(context.Context, int64, int64, string) error {
	f.call("SetFriendRemark")
	return f.err
}
func (f *fakeRelations) DeleteFriend(context.Context, int64, int64) error {
	f.call("DeleteFriend")
	return f.err
}
func (f *fakeRelations) BlockUser(context.Context, int64, int64) error {
	f.call("BlockUser")
	return f.err
}
func (f *fakeRelations) UnblockUser(context.Context, int64, int64) error {
	f.call("UnblockUser")
	return f.err
}
func (f *fakeRelations) IsBlocked(context.Context, int64, int64) (bool, error) {
	f.call("IsBlocked")
	return false, f.err
}
func (f *fakeRelations) BlockList(context.Context, int64) ([]store.Block, error) {
	f.call("BlockList")
	return nil, f.err
}
func (f *fakeRelations) CreateGroup(context.Context, *store.Group, []int64) (int64, error) {
	f.call("CreateGroup")
	if f.err != nil {
		return 0, f.err
	}
	return 42, nil
}
func (f *fakeRelations) Group(context.Context, int64) (*store.Group, error) {
	f.call("Group")
	return nil, f.err
}
func (f *fakeRelations) UpdateGroup(context.Context, int64, store.GroupUpdate) error {
	f.call("UpdateGroup")
	return f.err
}
func (f *fakeRelations) DismissGroup(context.Context, int64) error {
	f.call("DismissGroup")
	return f.err
}
func (f *fakeRelations) AddMembers(_ context.Context, _ int64, ids []int64, _ store.Role) ([]int64, error) {
	f.call("AddMembers")
	if f.err != nil {
		return nil, f.err
	}
	return ids[:1], nil
}
func (f *fakeRelations) RemoveMember(context.Context, int64, int64) error {
	f.call("RemoveMember")
	return f.err
}
func (f *fakeRelations) UpdateMember(context.Context, int64, int64, store.MemberUpdate) error {
	f.call("UpdateMember")
	return f.err
}
func (f *fakeRelations) TransferOwnership(context.Context, int64, int64) error {
	f.call("TransferOwnership")
	return f.err
}
func (f *fakeRelations) Member(context.Context, int64, int64) (*store.Member, error) {
	f.call("Member")
	return nil, f.err
}
func (f *fakeRelations) MemberChanges(context.Context, int64, int64) (store.Changes[store.Member], error) {
	f.call("MemberChanges")
	return store.Changes[store.Member]{}, f.err
}
func (f *fakeRelations) MemberIDs(context.Context, int64) ([]int64, error) {
	f.call("MemberIDs")
	return nil, f.err
}
func (f *fakeRelations) UserGroupChanges(context.Context, int64, int64) (store.Changes[store.UserGroup], error) {
	f.call("UserGroupChanges")
	return store.Changes[store.UserGroup]{}, f.err
}

// recorder is an Invalidator that records its calls.
type recorder struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (r *recorder) add(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
	return r.err
}
func (r *recorder) InvalidateFriend(_ context.Context, a, b int64) error {
	return r.add(fmt.Sprintf("friend %d %d", a, b))
}
func (r *recorder) InvalidateBlock(_ context.Context, a, b int64) error {
	return r.add(fmt.Sprintf("block %d %d", a, b))
}
func (r *recorder) InvalidateMember(_ context.Context, g int64, users ...int64) error {
	return r.add(fmt.Sprintf("member %d %v", g, users))
}
func (r *recorder) InvalidateGroup(_ context.Context, g int64) error {
	return r.add(fmt.Sprintf("group %d", g))
}

func TestWrap(t *testing.T) {
	boom := errors.New("boom")
	req := &store.FriendRequest{ID: 7, FromUser: 1, ToUser: 2}
	on := true
	tests := []struct {
		name  string
		err   error // the store's error
		reqOK bool
		call  func(ctx context.Context, s relcache.Relations) error
		want  []string // invalidations
	}{
		{name: "accept", call: func(ctx context.Context, s relcache.Relations) error {
			_, err := s.ResolveFriendRequest(ctx, 7, true)
			return err
		}, want: []string{"friend 1 2"}},
		{name: "accept failing, request known", err: boom, reqOK: true, call: func(ctx context.Context, s relcache.Relations) error {
			_, err := s.ResolveFriendRequest(ctx, 7, true)
			return err
		}, want: []string{"friend 1 2"}},
		{name: "accept failing, request unknown", err: boom, call: func(ctx context.Context, s relcache.Relations) error {
			_, err := s.ResolveFriendRequest(ctx, 7, true)
			return err
		}},
		{name: "reject", call: func(ctx context.Context, s relcache.Relations) error {
			_, err := s.ResolveFriendRequest(ctx, 7, false)
			return err
		}},
		{name: "request", call: func(ctx context.Context, s relcache.Relations) error {
			_, _, err := s.CreateFriendRequest(ctx, 1, 2, "hi")
			return err
		}},
		{name: "remark", call: func(ctx context.Context, s relcache.Relations) error {
			return s.SetFriendRemark(ctx, 1, 2, "x")
		}},
		{name: "delete friend", call: func(ctx context.Context, s relcache.Relations) error {
			return s.DeleteFriend(ctx, 3, 4)
		}, want: []string{"friend 3 4"}},
		{name: "delete friend failing", err: boom, call: func(ctx context.Context, s relcache.Relations) error {
			return s.DeleteFriend(ctx, 3, 4)
		}, want: []string{"friend 3 4"}},
		{name: "block", call: func(ctx context.Context, s relcache.Relations) error {
			return s.BlockUser(ctx, 5, 6)
		}, want: []string{"block 5 6"}},
		{name: "unblock", call: func(ctx context.Context, s relcache.Relations) error {
			return s.UnblockUser(ctx, 5, 6)
		}, want: []string{"block 5 6"}},
		{name: "create group", call: func(ctx context.Context, s relcache.Relations) error {
			_, err := s.CreateGroup(ctx, &store.Group{}, []int64{1})
			return err
		}, want: []string{"group 42"}},
		{name: "create group failing", err: boom, call: func(ctx context.Context, s relcache.Relations) error {
			_, err := s.CreateGroup(ctx, &store.Group{}, []int64{1})
			return err
		}},
		{name: "update group name", call: func(ctx context.Context, s relcache.Relations) error {
			name := "n"
			return s.UpdateGroup(ctx, 9, store.GroupUpdate{Name: &name})
		}},
		{name: "update group mute-all", call: func(ctx context.Context, s relcache.Relations) error {
			return s.UpdateGroup(ctx, 9, store.GroupUpdate{MuteAll: &on})
		}, want: []string{"group 9"}},
		{name: "dismiss", call: func(ctx context.Context, s relcache.Relations) error {
			return s.DismissGroup(ctx, 9)
		}, want: []string{"group 9"}},
		{name: "add members", call: func(ctx context.Context, s relcache.Relations) error {
			_, err := s.AddMembers(ctx, 9, []int64{1, 2, 3}, store.RoleMember)
			return err
		}, want: []string{"member 9 [1 2 3]"}},
		{name: "add members failing", err: boom, call: func(ctx context.Context, s relcache.Relations) error {
			_, err := s.AddMembers(ctx, 9, []int64{1, 2}, store.RoleMember)
			return err
		}, want: []string{"member 9 [1 2]"}},
		{name: "remove member", call: func(ctx context.Context, s relcache.Relations) error {
			return s.RemoveMember(ctx, 9, 4)
		}, want: []string{"member 9 [4]"}},
		{name: "update member", call: func(ctx context.Context, s relcache.Relations) error {
			return s.UpdateMember(ctx, 9, 4, store.MemberUpdate{})
		}, want: []string{"member 9 [4]"}},
		{name: "transfer", call: func(ctx context.Context, s relcache.Relations) error {
			return s.TransferOwnership(ctx, 9, 4)
		}, want: []string{"group 9"}},
		{name: "reads", call: func(ctx context.Context, s relcache.Relations) error {
			s.Friend(ctx, 1, 2)
			s.FriendChanges(ctx, 1, 0)
			s.FriendRequests(ctx, 1, 10)
			s.IsBlocked(ctx, 1, 2)
			s.BlockList(ctx, 1)
			s.Group(ctx, 1)
			s.Member(ctx, 1, 2)
			s.MemberChanges(ctx, 1, 0)
			s.MemberIDs(ctx, 1)
			s.UserGroupChanges(ctx, 1, 0)
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRelations{err: tc.err, req: req, reqOK: tc.reqOK}
			rec := &recorder{}
			w := relcache.Wrap(f, rec, slog.New(slog.DiscardHandler))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if err := tc.call(ctx, w); !errors.Is(err, tc.err) {
				t.Fatalf("error = %v, want the store's %v", err, tc.err)
			}
			if !reflect.DeepEqual(rec.calls, tc.want) {
				t.Fatalf("invalidations = %q, want %q", rec.calls, tc.want)
			}
			if len(f.calls) == 0 {
				t.Fatal("the store was not called")
			}
		})
	}
}

// TestWrapInvalidatorErrorNotReturned: the store change stands when the
// invalidation is lost; the caller gets the store's result.
func TestWrapInvalidatorErrorNotReturned(t *testing.T) {
	rec := &recorder{err: relcache.ErrInvalidationLost}
	w := relcache.Wrap(&fakeRelations{}, rec, slog.New(slog.DiscardHandler))
	if err := w.BlockUser(t.Context(), 1, 2); err != nil {
		t.Fatalf("BlockUser = %v, want nil", err)
	}
	if len(rec.calls) != 1 {
		t.Fatalf("invalidations = %q", rec.calls)
	}
}

// TestWrapWithCache: the wrapper keeps a Cache correct end to end over a
// store whose writes change the fake Source.
func TestWrapWithCache(t *testing.T) {
	src := cachetest.NewSource()
	c := relcache.New(relcache.NewMemory(relcache.MemoryConfig{}), src, relcache.Config{})
	w := relcache.Wrap(&sourceStore{fakeRelations: &fakeRelations{}, src: src}, c, nil)
	ctx := t.Context()
	if ok, _ := c.IsBlocked(ctx, 1, 2); ok {
		t.Fatal("blocked before BlockUser")
	}
	if err := w.BlockUser(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.IsBlocked(ctx, 1, 2); !ok {
		t.Fatal("the cache still says not blocked after BlockUser through the wrapper")
	}
}

// sourceStore applies BlockUser to the fake Source.
type sourceStore struct {
	*fakeRelations
	src *cachetest.Source
}

func (s *sourceStore) BlockUser(_ context.Context, a, b int64) error {
	s.src.SetBlock(a, b, true)
	return nil
}

package cachetest

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/store"
)

// Source is an in-memory relcache.Source that counts its calls, can fail on
// demand and can run a hook after it read the state (to interleave an
// invalidation with a fill). Safe for concurrent use.
type Source struct {
	mu      sync.RWMutex
	friends map[[2]int64]bool
	blocks  map[[2]int64]bool
	groups  map[int64]store.Group
	members map[[2]int64]store.Member
	err     error
	hooks   map[relcache.Kind]func(relcache.Key)

	calls [relcache.KindMember + 1]atomic.Int64
}

var _ relcache.Source = (*Source)(nil)

// NewSource returns an empty Source.
func NewSource() *Source {
	return &Source{
		friends: make(map[[2]int64]bool),
		blocks:  make(map[[2]int64]bool),
		groups:  make(map[int64]store.Group),
		members: make(map[[2]int64]store.Member),
		hooks:   make(map[relcache.Kind]func(relcache.Key)),
	}
}

// SetFriend makes a and b friends (both directions) or not.
func (s *Source) SetFriend(a, b int64, yes bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if yes {
		s.friends[[2]int64{a, b}], s.friends[[2]int64{b, a}] = true, true
	} else {
		delete(s.friends, [2]int64{a, b})
		delete(s.friends, [2]int64{b, a})
	}
}

// SetBlock records whether a blocked b.
func (s *Source) SetBlock(a, b int64, yes bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if yes {
		s.blocks[[2]int64{a, b}] = true
	} else {
		delete(s.blocks, [2]int64{a, b})
	}
}

// SetGroup creates or replaces g (by g.ID).
func (s *Source) SetGroup(g store.Group) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[g.ID] = g
}

// DismissGroup marks a group dismissed and removes its members, as
// store.Groups.DismissGroup does.
func (s *Source) DismissGroup(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[id]
	g.Dismissed = true
	s.groups[id] = g
	for k := range s.members {
		if k[0] == id {
			delete(s.members, k)
		}
	}
}

// SetMember adds or replaces a membership.
func (s *Source) SetMember(m store.Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.members[[2]int64{m.GroupID, m.UserID}] = m
}

// RemoveMember removes a membership.
func (s *Source) RemoveMember(groupID, userID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members, [2]int64{groupID, userID})
}

// SetError makes every call fail with err (nil: succeed again).
func (s *Source) SetError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// OnLoad runs fn after every call of kind k has read the state and before
// it returns (nil removes the hook). KindGroup and KindMember are the Group
// and Member calls.
func (s *Source) OnLoad(k relcache.Kind, fn func(relcache.Key)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fn == nil {
		delete(s.hooks, k)
	} else {
		s.hooks[k] = fn
	}
}

// Calls returns the number of calls of kind k so far.
func (s *Source) Calls(k relcache.Kind) int64 { return s.calls[k].Load() }

// TotalCalls returns the number of calls of every kind so far.
func (s *Source) TotalCalls() int64 {
	var n int64
	for i := range s.calls {
		n += s.calls[i].Load()
	}
	return n
}

// read runs fn under the read lock, then the hook of k.
func (s *Source) read(ctx context.Context, k relcache.Key, fn func() error) error {
	s.calls[k.Kind].Add(1)
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	err := s.err
	if err == nil {
		err = fn()
	}
	hook := s.hooks[k.Kind]
	s.mu.RUnlock()
	if hook != nil {
		hook(k)
	}
	return err
}

// Friend implements relcache.Source.
func (s *Source) Friend(ctx context.Context, userID, friendID int64) (*store.Friend, error) {
	var ok bool
	err := s.read(ctx, relcache.FriendKey(userID, friendID), func() error {
		ok = s.friends[[2]int64{userID, friendID}]
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, store.ErrNotFound
	}
	return &store.Friend{UserID: userID, FriendID: friendID}, nil
}

// IsBlocked implements relcache.Source.
func (s *Source) IsBlocked(ctx context.Context, userID, blockedID int64) (bool, error) {
	var ok bool
	err := s.read(ctx, relcache.BlockKey(userID, blockedID), func() error {
		ok = s.blocks[[2]int64{userID, blockedID}]
		return nil
	})
	return ok, err
}

// Group implements relcache.Source.
func (s *Source) Group(ctx context.Context, id int64) (*store.Group, error) {
	var g store.Group
	var ok bool
	err := s.read(ctx, relcache.GroupKey(id), func() error {
		g, ok = s.groups[id]
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, store.ErrNotFound
	}
	return &g, nil
}

// Member implements relcache.Source.
func (s *Source) Member(ctx context.Context, groupID, userID int64) (*store.Member, error) {
	var m store.Member
	var ok bool
	err := s.read(ctx, relcache.MemberKey(groupID, userID), func() error {
		m, ok = s.members[[2]int64{groupID, userID}]
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, store.ErrNotFound
	}
	return &m, nil
}

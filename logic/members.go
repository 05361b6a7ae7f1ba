package logic

import (
	"context"
	"sync"
)

// memberLists caches groups' member id lists for the message path (every
// group message and typing event needs them for the fan-out and the index).
// An entry is used only while the group's member-list version is the one
// it was loaded at: each use costs a one-row group lookup instead of
// reading every member, and a change made by any logic process is seen at
// once. Bounded: emptied when full.
type memberLists struct {
	mu     sync.Mutex
	groups map[int64]memberList
}

type memberList struct {
	version int64
	ids     []int64 // shared, never modified
}

const maxCachedMemberLists = 4096

// groupMembers returns the ids of group's current members (ascending;
// callers must not modify the slice).
func (s *Service) groupMembers(ctx context.Context, group int64) ([]int64, error) {
	g, err := s.store.Group(ctx, group)
	if err != nil {
		return nil, err
	}
	c := &s.memberLists
	c.mu.Lock()
	e, ok := c.groups[group]
	c.mu.Unlock()
	if ok && e.version == g.Version {
		return e.ids, nil
	}
	ids, err := s.store.MemberIDs(ctx, group)
	if err != nil {
		return nil, err
	}
	// Keep the list only if the version did not move while it was read.
	if g2, err := s.store.Group(ctx, group); err == nil && g2.Version == g.Version {
		c.mu.Lock()
		if c.groups == nil || len(c.groups) >= maxCachedMemberLists {
			c.groups = make(map[int64]memberList)
		}
		c.groups[group] = memberList{version: g.Version, ids: ids}
		c.mu.Unlock()
	}
	return ids, nil
}

package job

import (
	"maps"
	"sync"
)

// StaticComets is a Comets whose nodes are set by hand: the one-process
// server registers its embedded comet in it. It is safe for concurrent use.
type StaticComets struct {
	mu sync.RWMutex
	m  map[string]Comet
}

var _ Comets = (*StaticComets)(nil)

// NewStaticComets returns an empty set.
func NewStaticComets() *StaticComets {
	return &StaticComets{m: make(map[string]Comet)}
}

// Set adds or replaces the node named name.
func (s *StaticComets) Set(name string, c Comet) {
	s.mu.Lock()
	s.m[name] = c
	s.mu.Unlock()
}

// Remove forgets the node named name.
func (s *StaticComets) Remove(name string) {
	s.mu.Lock()
	delete(s.m, name)
	s.mu.Unlock()
}

// Comet returns the node named name.
func (s *StaticComets) Comet(name string) (Comet, bool) {
	s.mu.RLock()
	c, ok := s.m[name]
	s.mu.RUnlock()
	return c, ok
}

// All returns a copy of the nodes by name.
func (s *StaticComets) All() map[string]Comet {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.m)
}

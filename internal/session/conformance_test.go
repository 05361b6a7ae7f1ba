package session_test

import (
	"testing"

	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/internal/session/sessiontest"
)

func TestMemoryConformance(t *testing.T) {
	configs := []struct {
		name string
		cfg  session.MemoryConfig
	}{
		{"default", session.MemoryConfig{}},
		{"one_shard", session.MemoryConfig{Shards: 1}},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			sessiontest.Run(t, func(t *testing.T) session.Registry { return session.NewMemory(c.cfg) })
		})
	}
}

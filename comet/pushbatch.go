package comet

import (
	"context"
	"fmt"

	"github.com/goimdev/goim/protocol"
)

// PushKeysBatch delivers packets[i] to the connections with the routing keys
// keys[i], as PushKeys does, for every i in order: a connection named by
// several entries receives their packets in list order. The jobs send one
// batch per comet per bus batch instead of one PushKeys call per message.
// keys and packets must have the same length. If ctx ends in the middle, the
// entries before it were delivered and the error says how many were not.
func (s *Server) PushKeysBatch(ctx context.Context, keys [][]string, packets []protocol.Packet) error {
	if len(keys) != len(packets) {
		return fmt.Errorf("comet: push keys batch: %d key lists for %d packets", len(keys), len(packets))
	}
	for i := range packets {
		if err := s.PushKeys(ctx, keys[i], packets[i]); err != nil {
			return fmt.Errorf("comet: push keys batch: %d of %d entries not pushed: %w", len(packets)-i, len(packets), err)
		}
	}
	return nil
}

package job

import (
	"context"

	"github.com/goimdev/goim/protocol"
)

// Comet is what job needs from one comet node. *comet.Server implements it
// in the one-process server; a Kitex client does in the distributed mode.
type Comet interface {
	// PushKeys delivers p to the connections with the given keys. Business
	// ops (>= 1000) reach only connections whose accepts list has the op.
	PushKeys(ctx context.Context, keys []string, p protocol.Packet) error
	// PushKeysBatch is PushKeys(ctx, keys[i], packets[i]) for every i, in
	// order, in one call: a connection named by several entries receives
	// their packets in list order. len(keys) == len(packets). On an error
	// some leading entries may have been delivered.
	PushKeysBatch(ctx context.Context, keys [][]string, packets []protocol.Packet) error
	// PushRoom delivers a batch to every connection in room, whatever its
	// accepts. batch is the body of an Op 9 packet: one or more complete
	// encoded packets back to back. TCP connections get the inner packets as
	// they are; WebSocket connections get one frame holding the Op 9 packet.
	PushRoom(ctx context.Context, room string, batch []byte) error
	// Broadcast delivers p to every connection that accepts p.Op (IM ops
	// below 1000 reach all), at most speed connections per second (0: no limit).
	Broadcast(ctx context.Context, p protocol.Packet, speed int32) error
}

// Comets finds comet nodes by name.
type Comets interface {
	// Comet returns the node named name.
	Comet(name string) (Comet, bool)
	// All returns every known node by name.
	All() map[string]Comet
}

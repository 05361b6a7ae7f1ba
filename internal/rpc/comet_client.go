package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cloudwego/kitex/pkg/remote"

	"github.com/goimdev/goim/idl/kitex_gen/goimrpc"
	cometsvc "github.com/goimdev/goim/idl/kitex_gen/goimrpc/comet"
	"github.com/goimdev/goim/internal/discovery"
	"github.com/goimdev/goim/job"
	"github.com/goimdev/goim/protocol"
)

// CometService is the discovery service name of the comet nodes.
const CometService = "comet"

// CometClient implements job.Comet for one comet node. Pushes are tried
// once (a retry could deliver twice); Rooms is retried.
type CometClient struct {
	cfg  ClientConfig
	addr string
	kc   *kitexConn

	// noBatchUntil (unix nanoseconds): the node answered PushKeysBatch with
	// "unknown method" (a comet built before it existed); PushKeysBatch
	// sends one PushKeys per entry until then, and asks again after.
	noBatchUntil atomic.Int64
}

// batchRetryAfter is how long a CometClient falls back to PushKeys after
// the node did not know PushKeysBatch (during a rolling upgrade).
const batchRetryAfter = time.Minute

var _ job.Comet = (*CometClient)(nil)

// NewCometClient returns a client of the comet node at addr. It does not
// dial: connections are made by the first calls.
func NewCometClient(addr string, cfg ClientConfig) (*CometClient, error) {
	cfg = cfg.withDefaults()
	kc, err := dialKitex(cometsvc.NewServiceInfoForClient(), addr, cfg)
	if err != nil {
		return nil, err
	}
	return &CometClient{cfg: cfg, addr: addr, kc: kc}, nil
}

// Addr returns the node's RPC address.
func (c *CometClient) Addr() string { return c.addr }

// Close closes the connections, once the calls in flight are done. Later
// calls fail with ErrClosed.
func (c *CometClient) Close() error {
	c.kc.close()
	return nil
}

func (c *CometClient) call(ctx context.Context, method string, args, result any) error {
	if err := c.kc.call(ctx, method, args, result); err != nil {
		return fmt.Errorf("rpc: comet %s %s: %w", c.addr, method, err)
	}
	return nil
}

// PushKeys implements job.Comet.
func (c *CometClient) PushKeys(ctx context.Context, keys []string, p protocol.Packet) error {
	args := &goimrpc.CometPushKeysArgs{Keys: keys, Packet: packetToWire(&p)}
	return c.call(ctx, "PushKeys", args, goimrpc.NewCometPushKeysResult())
}

// PushKeysBatch implements job.Comet: one call carries every entry. A node
// that does not know the method (an older comet) gets one PushKeys per
// entry, in order, for the next batchRetryAfter.
func (c *CometClient) PushKeysBatch(ctx context.Context, keys [][]string, ps []protocol.Packet) error {
	if len(keys) != len(ps) {
		return fmt.Errorf("rpc: comet %s PushKeysBatch: %d key lists for %d packets", c.addr, len(keys), len(ps))
	}
	if len(ps) == 0 {
		return nil
	}
	if time.Now().UnixNano() >= c.noBatchUntil.Load() {
		args := &goimrpc.CometPushKeysBatchArgs{Pushes: keysPushesToWire(keys, ps)}
		err := c.call(ctx, "PushKeysBatch", args, goimrpc.NewCometPushKeysBatchResult())
		var te *remote.TransError
		// Kitex answers "unknown service" when no registered service has
		// the method, as on a comet without it.
		if err == nil || !errors.As(err, &te) || (te.TypeID() != remote.UnknownMethod && te.TypeID() != remote.UnknownService) {
			return err
		}
		c.noBatchUntil.Store(time.Now().Add(batchRetryAfter).UnixNano())
		c.cfg.Logger.Warn("rpc: comet does not know PushKeysBatch, pushing one message per call", "addr", c.addr,
			"retry_after", batchRetryAfter)
	}
	for i := range ps {
		if err := c.PushKeys(ctx, keys[i], ps[i]); err != nil {
			return fmt.Errorf("rpc: comet %s: %d of %d entries not pushed: %w", c.addr, len(ps)-i, len(ps), err)
		}
	}
	return nil
}

// PushRoom implements job.Comet.
func (c *CometClient) PushRoom(ctx context.Context, room string, batch []byte) error {
	args := &goimrpc.CometPushRoomArgs{Room: room, Batch: batch}
	return c.call(ctx, "PushRoom", args, goimrpc.NewCometPushRoomResult())
}

// Broadcast implements job.Comet.
func (c *CometClient) Broadcast(ctx context.Context, p protocol.Packet, speed int32) error {
	args := &goimrpc.CometBroadcastArgs{Packet: packetToWire(&p), Speed: speed}
	return c.call(ctx, "Broadcast", args, goimrpc.NewCometBroadcastResult())
}

// Rooms returns the node's local online count of every room with a member.
func (c *CometClient) Rooms(ctx context.Context) (map[string]int32, error) {
	var err error
	for range 1 + c.cfg.Retries {
		res := goimrpc.NewCometRoomsResult()
		if err = c.call(ctx, "Rooms", goimrpc.NewCometRoomsArgs(), res); err == nil {
			if res.Success == nil {
				return map[string]int32{}, nil
			}
			return res.Success, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// Comets implements job.Comets over the comet nodes a discovery.Watcher
// reports: one CometClient per node name, replaced when the node's address
// changes and closed when it leaves.
type Comets struct {
	pool *pool[*CometClient]
}

var _ job.Comets = (*Comets)(nil)

// NewComets follows the comet nodes w reports under CometService. It waits,
// within ctx, for the watcher's first list, and follows the later ones
// until Close.
func NewComets(ctx context.Context, w discovery.Watcher, cfg ClientConfig) (*Comets, error) {
	cfg = cfg.withDefaults()
	dial := func(addr string) (*CometClient, error) { return NewCometClient(addr, cfg) }
	p := newPool(CometService, dial, func(c *CometClient) { _ = c.Close() }, cfg.Logger)
	if err := p.follow(ctx, w); err != nil {
		return nil, err
	}
	return &Comets{pool: p}, nil
}

// Comet implements job.Comets.
func (cs *Comets) Comet(name string) (job.Comet, bool) {
	c, ok := cs.pool.get(name)
	if !ok {
		return nil, false
	}
	return c, true
}

// Client returns the client of the node named name.
func (cs *Comets) Client(name string) (*CometClient, bool) { return cs.pool.get(name) }

// All implements job.Comets. The map is the caller's.
func (cs *Comets) All() map[string]job.Comet {
	ms := cs.pool.members()
	out := make(map[string]job.Comet, len(ms))
	for _, m := range ms {
		out[m.name] = m.client
	}
	return out
}

// Names returns the node names in use, in the watcher's order.
func (cs *Comets) Names() []string {
	ms := cs.pool.members()
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.name
	}
	return out
}

// Close stops following discovery and closes every client.
func (cs *Comets) Close() error {
	cs.pool.closeAll()
	return nil
}

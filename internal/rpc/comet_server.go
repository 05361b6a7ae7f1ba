package rpc

import (
	"context"
	"net"

	kserver "github.com/cloudwego/kitex/server"

	"github.com/goimdev/goim/idl/kitex_gen/goimrpc"
	cometsvc "github.com/goimdev/goim/idl/kitex_gen/goimrpc/comet"
	"github.com/goimdev/goim/job"
)

// CometNode is what a CometServer serves: the pushes of job.Comet and the
// local room counts. *comet.Server implements it.
type CometNode interface {
	job.Comet
	// RoomCounts returns the local online count of every room with a member.
	RoomCounts() map[string]int32
}

// CometServer serves one comet node to the jobs.
type CometServer struct {
	s *server
}

// NewCometServer listens on addr ("host:port", port 0 for any) and serves
// node until Stop. It returns once the listener is bound.
func NewCometServer(addr string, node CometNode, cfg ServerConfig) (*CometServer, error) {
	h := &cometHandler{node: node}
	s, err := listen("comet", addr, cfg, func(opts ...kserver.Option) kserver.Server {
		return cometsvc.NewServer(h, opts...)
	})
	if err != nil {
		return nil, err
	}
	return &CometServer{s: s}, nil
}

// Addr returns the bound address (to register in discovery).
func (s *CometServer) Addr() net.Addr { return s.s.addr() }

// Stop stops accepting, lets the calls in flight finish (ServerConfig.ExitWait
// at most, or until ctx ends) and closes the connections.
func (s *CometServer) Stop(ctx context.Context) error { return s.s.stop(ctx) }

type cometHandler struct {
	node CometNode
}

var _ goimrpc.Comet = (*cometHandler)(nil)

func (h *cometHandler) PushKeys(ctx context.Context, keys []string, p *goimrpc.Packet) error {
	return h.node.PushKeys(ctx, keys, packetFromWire(p))
}

func (h *cometHandler) PushKeysBatch(ctx context.Context, pushes []*goimrpc.KeysPush) error {
	keys, ps := keysPushesFromWire(pushes)
	return h.node.PushKeysBatch(ctx, keys, ps)
}

func (h *cometHandler) PushRoom(ctx context.Context, room string, batch []byte) error {
	return h.node.PushRoom(ctx, room, batch)
}

func (h *cometHandler) Broadcast(ctx context.Context, p *goimrpc.Packet, speed int32) error {
	return h.node.Broadcast(ctx, packetFromWire(p), speed)
}

func (h *cometHandler) Rooms(ctx context.Context) (map[string]int32, error) {
	return h.node.RoomCounts(), nil
}

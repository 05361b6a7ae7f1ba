package rpc

import (
	"context"
	"errors"
	"net"

	kserver "github.com/cloudwego/kitex/server"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/idl/kitex_gen/goimrpc"
	"github.com/goimdev/goim/idl/kitex_gen/goimrpc/logic"
	"github.com/goimdev/goim/protocol"
)

// LogicServer serves a comet.Logic (the logic service) to the comets.
type LogicServer struct {
	s *server
}

// NewLogicServer listens on addr ("host:port", port 0 for any) and serves
// impl until Stop. It returns once the listener is bound.
func NewLogicServer(addr string, impl comet.Logic, cfg ServerConfig) (*LogicServer, error) {
	h := &logicHandler{impl: impl}
	s, err := listen("logic", addr, cfg, func(opts ...kserver.Option) kserver.Server {
		return logic.NewServer(h, opts...)
	})
	if err != nil {
		return nil, err
	}
	return &LogicServer{s: s}, nil
}

// Addr returns the bound address (to register in discovery).
func (s *LogicServer) Addr() net.Addr { return s.s.addr() }

// Stop stops accepting, lets the calls in flight finish (ServerConfig.ExitWait
// at most, or until ctx ends) and closes the connections.
func (s *LogicServer) Stop(ctx context.Context) error { return s.s.stop(ctx) }

// logicHandler adapts a comet.Logic to the generated service interface.
type logicHandler struct {
	impl comet.Logic
}

var _ goimrpc.Logic = (*logicHandler)(nil)

func (h *logicHandler) Connect(ctx context.Context, req *goimrpc.ConnectRequest) (*goimrpc.ConnectReply, error) {
	reply, err := h.impl.Connect(ctx, connectRequestFromWire(req))
	if err != nil {
		if ce, ok := errors.AsType[*comet.CloseError](err); ok {
			return nil, &goimrpc.CloseError{Code: ce.Code, Reason: ce.Reason}
		}
		// comet.Logic's contract: any other refusal closes as
		// unauthorized. Saying so here leaves the client free to read a
		// failed call (no logic reachable) as "unavailable, retry".
		return nil, &goimrpc.CloseError{Code: protocol.CodeUnauthorized, Reason: "authentication failed"}
	}
	return connectReplyToWire(reply), nil
}

func (h *logicHandler) Disconnect(ctx context.Context, c *goimrpc.ConnRef) error {
	return h.impl.Disconnect(ctx, c.GetServer(), c.GetUserId(), c.GetKey(), c.GetConnId())
}

// Heartbeats refreshes many sessions: in one call when the logic takes
// batches, else one by one (the first error is returned, after trying all).
func (h *logicHandler) Heartbeats(ctx context.Context, server string, conns []*goimrpc.ConnRef) error {
	refs := make([]comet.ConnRef, len(conns))
	for i, c := range conns {
		refs[i] = comet.ConnRef{UserID: c.GetUserId(), Key: c.GetKey(), ConnID: c.GetConnId()}
	}
	if b, ok := h.impl.(comet.HeartbeatBatcher); ok {
		return b.Heartbeats(ctx, server, refs)
	}
	var first error
	for _, r := range refs {
		if err := h.impl.Heartbeat(ctx, server, r.UserID, r.Key, r.ConnID); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (h *logicHandler) Heartbeat(ctx context.Context, c *goimrpc.ConnRef) error {
	return h.impl.Heartbeat(ctx, c.GetServer(), c.GetUserId(), c.GetKey(), c.GetConnId())
}

func (h *logicHandler) RoomJoined(ctx context.Context, server, room string) error {
	return h.impl.RoomJoined(ctx, server, room)
}

func (h *logicHandler) RenewOnline(ctx context.Context, report *goimrpc.OnlineReport) (map[string]int32, error) {
	return h.impl.RenewOnline(ctx, onlineReportFromWire(report))
}

func (h *logicHandler) Receive(ctx context.Context, req *goimrpc.ReceiveRequest) (*goimrpc.ReceiveReply, error) {
	p, err := h.impl.Receive(ctx, &comet.ReceiveRequest{
		Server: req.GetServer(),
		UserID: req.GetUserId(),
		Key:    req.GetKey(),
		Packet: packetFromWire(req.GetPacket()),
	})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return &goimrpc.ReceiveReply{}, nil
	}
	return &goimrpc.ReceiveReply{Reply: packetToWire(p)}, nil
}

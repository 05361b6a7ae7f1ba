package rpc

import (
	"context"
	"fmt"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/idl/kitex_gen/goimrpc"
	"github.com/goimdev/goim/idl/kitex_gen/goimrpc/logic"
	"github.com/goimdev/goim/internal/discovery"
	"github.com/goimdev/goim/protocol"
)

// LogicService is the discovery service name of the logic instances.
const LogicService = "logic"

// LogicClient implements comet.Logic over the live logic instances,
// round-robin. It is safe for concurrent use.
type LogicClient struct {
	cfg  ClientConfig
	pool *pool[*kitexConn]
}

var (
	_ comet.Logic            = (*LogicClient)(nil)
	_ comet.HeartbeatBatcher = (*LogicClient)(nil)
)

func newLogicClient(cfg ClientConfig) *LogicClient {
	cfg = cfg.withDefaults()
	svc := logic.NewServiceInfoForClient()
	dial := func(addr string) (*kitexConn, error) { return dialKitex(svc, addr, cfg) }
	return &LogicClient{cfg: cfg, pool: newPool(LogicService, dial, (*kitexConn).close, cfg.Logger)}
}

// NewLogicClient returns a client of the logic instances w reports under
// LogicService. It waits, within ctx, for the watcher's first list (which
// may be empty: calls then fail with ErrNoInstance until one comes up), and
// follows the later ones until Close.
func NewLogicClient(ctx context.Context, w discovery.Watcher, cfg ClientConfig) (*LogicClient, error) {
	c := newLogicClient(cfg)
	if err := c.pool.follow(ctx, w); err != nil {
		return nil, err
	}
	return c, nil
}

// NewLogicClientAddrs returns a client of a fixed list of logic instances.
func NewLogicClientAddrs(addrs []string, cfg ClientConfig) *LogicClient {
	c := newLogicClient(cfg)
	list := make([]discovery.Instance, len(addrs))
	for i, a := range addrs {
		list[i] = discovery.Instance{Service: LogicService, Name: a, Addr: a}
	}
	c.pool.update(list)
	return c
}

// Instances returns the addresses of the instances in use.
func (c *LogicClient) Instances() []string {
	ms := c.pool.members()
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.addr
	}
	return out
}

// Close stops following discovery and closes the connections.
func (c *LogicClient) Close() error {
	c.pool.closeAll()
	return nil
}

// once makes a call that is not idempotent: it goes to another instance
// only when the request could not be sent.
func (c *LogicClient) once(ctx context.Context, method string, args, result any) error {
	err := c.pool.call(ctx, c.cfg.Retries, notSent, func(kc *kitexConn) error { return kc.call(ctx, method, args, result) })
	if err != nil {
		return fmt.Errorf("rpc: logic %s: %w", method, err)
	}
	return nil
}

// idempotent makes a call that may be repeated: it goes to the next
// instance after any failure.
func (c *LogicClient) idempotent(ctx context.Context, method string, args, result any) error {
	err := c.pool.call(ctx, c.cfg.Retries, anyError, func(kc *kitexConn) error { return kc.call(ctx, method, args, result) })
	if err != nil {
		return fmt.Errorf("rpc: logic %s: %w", method, err)
	}
	return nil
}

// Connect implements comet.Logic. A refusal comes back as *comet.CloseError;
// so does a call that no logic answered, with code unavailable.
// It is retried only when the request could not be sent (it registers a
// session).
func (c *LogicClient) Connect(ctx context.Context, req *comet.ConnectRequest) (*comet.ConnectReply, error) {
	res := goimrpc.NewLogicConnectResult()
	if err := c.once(ctx, "Connect", &goimrpc.LogicConnectArgs{Req: connectRequestToWire(req)}, res); err != nil {
		// No logic answered: not the client's fault. The comet closes with
		// Op 6 "unavailable" (clients retry), not "unauthorized" (an SDK
		// gives up on that).
		return nil, fmt.Errorf("%w: %w", &comet.CloseError{Code: protocol.CodeUnavailable, Reason: "no logic instance answered"}, err)
	}
	if ce := res.GetRefused(); ce != nil {
		return nil, &comet.CloseError{Code: ce.Code, Reason: ce.Reason}
	}
	if res.Success == nil {
		return nil, fmt.Errorf("rpc: logic Connect: empty reply")
	}
	return connectReplyFromWire(res.Success), nil
}

// Disconnect implements comet.Logic. It is retried only when the request
// could not be sent.
func (c *LogicClient) Disconnect(ctx context.Context, server string, userID int64, key, connID string) error {
	args := &goimrpc.LogicDisconnectArgs{Conn: &goimrpc.ConnRef{Server: server, UserId: userID, Key: key, ConnId: connID}}
	return c.once(ctx, "Disconnect", args, goimrpc.NewLogicDisconnectResult())
}

// Heartbeat implements comet.Logic. It is retried.
func (c *LogicClient) Heartbeat(ctx context.Context, server string, userID int64, key, connID string) error {
	args := &goimrpc.LogicHeartbeatArgs{Conn: &goimrpc.ConnRef{Server: server, UserId: userID, Key: key, ConnId: connID}}
	return c.idempotent(ctx, "Heartbeat", args, goimrpc.NewLogicHeartbeatResult())
}

// Heartbeats implements comet.HeartbeatBatcher: the session refreshes of
// many connections of one comet in one call. It is retried.
func (c *LogicClient) Heartbeats(ctx context.Context, server string, conns []comet.ConnRef) error {
	refs := make([]*goimrpc.ConnRef, len(conns))
	for i, r := range conns {
		refs[i] = &goimrpc.ConnRef{Server: server, UserId: r.UserID, Key: r.Key, ConnId: r.ConnID}
	}
	return c.idempotent(ctx, "Heartbeats", &goimrpc.LogicHeartbeatsArgs{Server: server, Conns: refs}, goimrpc.NewLogicHeartbeatsResult())
}

// RoomJoined implements comet.Logic. It is retried.
func (c *LogicClient) RoomJoined(ctx context.Context, server, room string) error {
	args := &goimrpc.LogicRoomJoinedArgs{Server: server, Room: room}
	return c.idempotent(ctx, "RoomJoined", args, goimrpc.NewLogicRoomJoinedResult())
}

// RenewOnline implements comet.Logic. It is retried.
func (c *LogicClient) RenewOnline(ctx context.Context, report *comet.OnlineReport) (map[string]int32, error) {
	res := goimrpc.NewLogicRenewOnlineResult()
	args := &goimrpc.LogicRenewOnlineArgs{Report: onlineReportToWire(report)}
	if err := c.idempotent(ctx, "RenewOnline", args, res); err != nil {
		return nil, err
	}
	return res.Success, nil
}

// Receive implements comet.Logic. It is retried only when the request
// could not be sent: once sent, a retry could handle a message twice.
func (c *LogicClient) Receive(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	res := goimrpc.NewLogicReceiveResult()
	args := &goimrpc.LogicReceiveArgs{Req: &goimrpc.ReceiveRequest{
		Server: req.Server,
		UserId: req.UserID,
		Key:    req.Key,
		Packet: packetToWire(&req.Packet),
	}}
	if err := c.once(ctx, "Receive", args, res); err != nil {
		return nil, err
	}
	if res.Success == nil || res.Success.Reply == nil {
		return nil, nil
	}
	p := packetFromWire(res.Success.Reply)
	return &p, nil
}

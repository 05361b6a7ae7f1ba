package rpc

import (
	"time"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/idl/kitex_gen/goimrpc"
	"github.com/goimdev/goim/protocol"
)

func packetToWire(p *protocol.Packet) *goimrpc.Packet {
	return &goimrpc.Packet{Ver: p.Ver, Op: p.Op, Seq: p.Seq, Body: p.Body}
}

func packetFromWire(p *goimrpc.Packet) protocol.Packet {
	if p == nil {
		return protocol.Packet{}
	}
	return protocol.Packet{Ver: p.Ver, Op: p.Op, Seq: p.Seq, Body: p.Body}
}

func keysPushesToWire(keys [][]string, ps []protocol.Packet) []*goimrpc.KeysPush {
	wire := make([]goimrpc.KeysPush, len(ps))
	pkts := make([]goimrpc.Packet, len(ps))
	out := make([]*goimrpc.KeysPush, len(ps))
	for i := range ps {
		p := &ps[i]
		pkts[i] = goimrpc.Packet{Ver: p.Ver, Op: p.Op, Seq: p.Seq, Body: p.Body}
		wire[i] = goimrpc.KeysPush{Keys: keys[i], Packet: &pkts[i]}
		out[i] = &wire[i]
	}
	return out
}

// keysPushesFromWire converts a PushKeysBatch list; a nil entry becomes an
// entry with no keys (it reaches no connection).
func keysPushesFromWire(pushes []*goimrpc.KeysPush) ([][]string, []protocol.Packet) {
	keys := make([][]string, len(pushes))
	ps := make([]protocol.Packet, len(pushes))
	for i, kp := range pushes {
		if kp == nil {
			continue
		}
		keys[i] = kp.Keys
		ps[i] = packetFromWire(kp.Packet)
	}
	return keys, ps
}

func connectRequestToWire(r *comet.ConnectRequest) *goimrpc.ConnectRequest {
	return &goimrpc.ConnectRequest{
		Server:     r.Server,
		RemoteAddr: r.RemoteAddr,
		Transport:  r.Transport,
		Body:       r.Body,
		QueryToken: r.QueryToken,
		ConnId:     r.ConnID,
	}
}

func connectRequestFromWire(r *goimrpc.ConnectRequest) *comet.ConnectRequest {
	return &comet.ConnectRequest{
		Server:     r.GetServer(),
		RemoteAddr: r.GetRemoteAddr(),
		Transport:  r.GetTransport(),
		Body:       r.GetBody(),
		QueryToken: r.GetQueryToken(),
		ConnID:     r.GetConnId(),
	}
}

func connectReplyToWire(r *comet.ConnectReply) *goimrpc.ConnectReply {
	return &goimrpc.ConnectReply{
		UserId:      r.UserID,
		Key:         r.Key,
		Room:        r.Room,
		Platform:    r.Platform,
		Accepts:     r.Accepts,
		HeartbeatNs: int64(r.Heartbeat),
		Body:        r.Body,
	}
}

func connectReplyFromWire(r *goimrpc.ConnectReply) *comet.ConnectReply {
	return &comet.ConnectReply{
		UserID:    r.GetUserId(),
		Key:       r.GetKey(),
		Room:      r.GetRoom(),
		Platform:  r.GetPlatform(),
		Accepts:   r.GetAccepts(),
		Heartbeat: time.Duration(r.GetHeartbeatNs()),
		Body:      r.GetBody(),
	}
}

func onlineReportToWire(r *comet.OnlineReport) *goimrpc.OnlineReport {
	w := &goimrpc.OnlineReport{
		Server:  r.Server,
		TcpAddr: r.TCPAddr,
		WsAddr:  r.WSAddr,
		Conns:   r.Conns,
		Ips:     r.IPs,
		Rooms:   r.Rooms,
	}
	if !r.TakenAt.IsZero() {
		w.TakenAtUnixNano = r.TakenAt.UnixNano()
	}
	return w
}

func onlineReportFromWire(r *goimrpc.OnlineReport) *comet.OnlineReport {
	c := &comet.OnlineReport{
		Server:  r.GetServer(),
		TCPAddr: r.GetTcpAddr(),
		WSAddr:  r.GetWsAddr(),
		Conns:   r.GetConns(),
		IPs:     r.GetIps(),
		Rooms:   r.GetRooms(),
	}
	if ns := r.GetTakenAtUnixNano(); ns != 0 {
		c.TakenAt = time.Unix(0, ns)
	}
	return c
}

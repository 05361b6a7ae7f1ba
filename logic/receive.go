package logic

import (
	"context"
	"strconv"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/protocol"
)

// opHandler handles one client op. It returns the reply packet, or nil when
// the reply will be pushed later. req.Packet.Body is valid only during the
// call.
type opHandler func(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error)

// opHandlers returns the Receive dispatch table: the IM ops.
func (s *Service) opHandlers() map[int32]opHandler {
	return map[int32]opHandler{
		protocol.OpSendMsg: s.opSend,   // send.go
		protocol.OpSync:    s.opSync,   // sync.go
		protocol.OpAck:     s.opAck,    // ack.go
		protocol.OpTyping:  s.opTyping, // typing.go
	}
}

// Receive implements comet.Logic: it dispatches an IM op from an
// authenticated connection. An op without a handler is answered with the
// same op and Seq and {"code":"unknown_op",...}.
func (s *Service) Receive(ctx context.Context, req *comet.ReceiveRequest) (*protocol.Packet, error) {
	if h, ok := s.ops[req.Packet.Op]; ok {
		return h(ctx, req)
	}
	return errorReply(req.Packet, protocol.CodeUnknownOp, "unknown operation "+strconv.FormatInt(int64(req.Packet.Op), 10)), nil
}

// errorReply returns a reply to p with the same op, version and Seq, whose
// body is {"code": code, "message": msg}.
func errorReply(p protocol.Packet, code, msg string) *protocol.Packet {
	return &protocol.Packet{Ver: p.Ver, Op: p.Op, Seq: p.Seq, Body: errorBody(code, msg)}
}

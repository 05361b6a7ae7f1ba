package comet

import "github.com/cloudwego/netpoll"

// NetpollBufferSize is the initial size of a connection's netpoll input
// buffer and the smallest output buffer node. netpoll defaults to 8 KiB in
// and 4 KiB out, which an idle connection keeps for its whole life; GoIM's
// packets are small, and buffers still grow (doubling) for large ones.
// It is applied process-wide (netpoll has no per-listener setting) when the
// package is initialised, before any connection exists.
const NetpollBufferSize = 256

func init() {
	netpoll.LinkBufferCap = NetpollBufferSize
	_ = netpoll.Configure(netpoll.Config{BufferSize: NetpollBufferSize})
}

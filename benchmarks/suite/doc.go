// Package suite holds goim-bench's scenarios (one file each: conns.go,
// room.go, chat.go, group.go, history.go; msgload.go is the send / SendAck /
// message-event engine the messaging scenarios share), the server it benchmarks (a spawned `goim standalone`, an
// external server, or an in-process one in tests), the result files they
// write to benchmarks/results/ and the tables rendered from them into
// benchmarks/README.md.
//
// A scenario is a function taking a Target (where the server is and how to
// authenticate against it) and a loadgen.Pool (the worker processes that
// hold the client connections) and returning a typed result that is part
// of Result, the JSON document of one run. The messaging scenarios take no
// pool: they hold their few thousand connections (loadgen.MsgConn) in the
// driver process.
package suite

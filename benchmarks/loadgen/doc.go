// Package loadgen is the load-generating half of goim-bench: a lean GoIM
// client built for tens of thousands of connections per process (one
// net.Conn and one reader goroutine per connection, heartbeats written by
// one shared ticker per worker), the worker that runs such connections
// inside a child process and answers the driver over JSON lines on
// stdin/stdout, the driver-side Pool that starts workers and merges their
// statistics, a paced HTTP pusher for the goim push API, and a mergeable
// log-linear latency histogram. MsgConn is the same client for the
// messaging scenarios: it writes Op 4 SendReqs and hands every server
// packet to a handler; AppendSendReq, ParseAck and ParseMessageEvent build
// and read the bodies.
//
// For the connection scenarios (conns, room) the driver never holds client
// connections itself: the server and the workers each stay under the
// per-process open-file limit. The messaging scenarios need only a few
// thousand connections and hold them in the driver.
package loadgen

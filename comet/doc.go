// Package comet is GoIM's connection server. It holds client TCP and
// WebSocket connections on cloudwego/netpoll, speaks the goim v2 binary
// protocol (package protocol; WebSocket through gobwas/ws on /sub) and keeps
// connection state only: who is connected under which routing key, which
// room each connection is in and which business ops it accepts. Everything
// else is asked of the logic tier through the Logic interface, and the job
// tier pushes back through PushKeys, PushRoom and Broadcast (job.Comet).
//
// Architecture, per Server:
//
//   - One connection state machine (conn.serve) for both transports; a
//     transport only differs in framing: TCP reads packets straight off the
//     stream, WebSocket first answers the HTTP upgrade and then reads one
//     packet per (unmasked) data frame, answering ping and close frames.
//   - Buckets sharded by hash: a connection lives in the bucket of its
//     routing key, a room in the bucket of its name (so a room's local online
//     count and its first join on this comet are decided under one lock).
//   - One timer wheel per server drives handshake, idle and close timeouts;
//     there is no timer or goroutine per connection. Activity only stores a
//     timestamp; the wheel re-files a connection lazily when it comes due.
//   - Output: a bounded queue per connection, drained by at most one writer
//     that writes everything queued and flushes once (one writev). The
//     writer is a pooled goroutine that exists only while there is data;
//     replies produced while reading are written in the reading goroutine
//     when it is done. Pushes are encoded once and the immutable bytes are
//     shared by every connection. A connection whose queue overflows, or
//     whose write blocks beyond Config.WriteTimeout, is closed as a slow
//     consumer (Op 6 slow_consumer is attempted first).
//   - Every close the server chooses is preceded by Op 6 {"code","reason"}
//     (plus "reconnect_after_ms" and "addrs" when draining); a stream that
//     cannot be read any more (PackLen < 16, HeaderLen != 16, WebSocket
//     protocol violations) is closed at once.
//
// Protocol decisions (PROTOCOL.md leaves them to the server):
//
//   - Replies echo the request's Ver and Seq, whatever Logic.Receive set.
//   - When Logic.Receive fails, the client gets the reply op of its request
//     (5, 19, 21 for ops 4, 18, 20; the same op otherwise) with the body
//     {"code":"internal",...}, or {"code":"unavailable",...} when the call
//     timed out; the connection stays. A *CloseError from Receive closes the
//     connection with its code (e.g. logic kicking a device).
//   - Op 3 carries the room's online count over all comets from the last
//     RenewOnline, or the local count if that is larger (or unknown).
//   - An Op 12 room key that protocol.ValidRoom refuses (the rule logic
//     applies to Op 7's room_id and the push API too), a WebSocket frame
//     holding a partial packet, and several packets per frame are handled
//     as: protocol error (Op 6 protocol_error), unreadable (close), accepted.
//   - Op 15 lists the ops of the Op 14 request the connection now accepts
//     (the accepts list holds at most protocol.MaxAccepts; what does not fit,
//     or is not a number, is left out); Op 17 lists the requested ops.
//   - When Shutdown's context ends before the drain is done, every
//     connection not told yet still gets Op 6 server_draining, and those
//     still open drainGrace later are closed. A connection whose write is
//     blocked (beyond WriteTimeout) gets no Op 6 at all.
//   - Every connection gets a ConnID (node, random boot id, counter) that
//     Logic.Connect, Heartbeat and Disconnect carry. Every connection that
//     Logic.Connect accepted calls Logic.Disconnect when it closes, including
//     one replaced by a newer connection with the same key (Op 6 replaced)
//     and a newcomer the comet refuses with "key in use" (another user's
//     connection holds the key here): logic removes the key's session only
//     while it is still that ConnID's, so a late Disconnect never removes a
//     newer connection's session.
//   - Logic.Heartbeat is called at most once per heartbeat interval, when
//     an authenticated connection reads anything (any packet, or a
//     WebSocket ping or other frame), so that a session does not expire
//     under a connection that is alive but rarely sends Op 2.
//   - OutQueue counts frames queued but not yet handed to the socket; the
//     batch being written is not counted.
//
// Importing comet lowers netpoll's initial per-connection buffer sizes
// (see NetpollBufferSize): netpoll's defaults hold 12 KiB per idle
// connection, far over the 4 KB budget. Buffers still grow on demand. The
// writer hands frames to netpoll zero-copy (WriteDirect), so no output
// buffer is kept either. Measure with comet/internal/memprobe.
package comet

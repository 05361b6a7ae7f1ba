// Package client is the GoIM Go client SDK: what a Go application, GoIM's own
// end-to-end tests and its benchmark tools use to talk to comet over TCP or
// WebSocket with the wire protocol of PROTOCOL.md (goim v2 framing, JSON IM
// bodies), plus a small helper for the logic HTTP API.
//
// A Client owns one connection at a time, served by two goroutines: a reader
// (which also runs the reconnect loop) and a writer (which also sends the
// periodic heartbeat). Writes from any number of goroutines are appended to
// one pending buffer and flushed by the writer in a single write, so
// pipelined requests cost one syscall per batch.
//
//	c, err := client.Dial(ctx, client.Config{Addr: "127.0.0.1:3101", Token: tok, Reconnect: true})
//	if err != nil { ... }            // *AuthError when the server refused the token
//	defer c.Close()
//	ack, err := c.SendMessage(ctx, client.SendReq{ClientMsgID: id, ToUser: 7, Type: client.TypeText, Content: body})
//	for p := range c.Packets() {     // server pushes: Op 22 events, business ops, ...
//		...
//	}
//
// Server pushes arrive on Packets (Op 9 batches are split into their inner
// packets). Replies to Request are matched by Seq and never appear there.
// Connection life-cycle changes (lost, reconnecting, reconnected, closed) are
// reported to Config.OnStateChange; after a reconnect the application should
// Sync the conversations it shows, because pushes sent while it was away are
// not replayed.
package client

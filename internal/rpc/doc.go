// Package rpc carries the calls between GoIM's processes in the distributed
// mode over Kitex (Thrift, contracts in idl/goim.thrift, generated code in
// idl/kitex_gen/goimrpc). It only adapts: the domain interfaces stay those
// of the one-process server.
//
//   - comet -> logic: a LogicServer exposes any comet.Logic (the logic
//     service) and a LogicClient implements comet.Logic for the comet,
//     balanced round-robin over the live logic instances reported by a
//     discovery.Watcher (or a fixed address list).
//   - job -> comet: a CometServer exposes a comet (job.Comet plus RoomCounts,
//     i.e. *comet.Server), a CometClient implements job.Comet for one comet
//     node, and Comets implements job.Comets over the comets a
//     discovery.Watcher reports, one client per node name.
//
// Every call has a timeout (ClientConfig.Timeout, or the context's deadline
// when sooner). Only idempotent calls are retried after any failure, on the
// next instance: Heartbeat, RenewOnline and RoomJoined (and Rooms). Connect,
// Disconnect and Receive go to another logic instance only when the request
// could not be sent (no connection, or the instance just left); once sent
// they are not repeated: a retried Receive could send a message twice. The
// pushes to a comet are tried once: a retried push could deliver twice.
//
// Payloads stay lean: packet bodies and room batches travel as Thrift binary
// fields, copied once when read, never re-encoded. A *comet.CloseError
// returned by Connect travels as the Thrift exception CloseError and comes
// back as a *comet.CloseError, so the comet closes with that Op 6 code.
package rpc

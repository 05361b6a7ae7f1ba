// Package logic is GoIM's logic service: accounts and JWT authentication,
// connection authentication and session routing for the comets (it
// implements comet.Logic), the HTTP JSON API for apps (accounts, profiles,
// friends, block list, groups), and the goim-compatible push API for
// business services, which publishes pushmsg.Msg values on the bus for job
// to deliver.
//
// The one-process server calls a *Service directly; the distributed mode
// wraps the same Service in a Kitex server.
//
// # HTTP errors
//
// Every error, on the app API and on the goim push API alike, is a 4xx/5xx
// status with the body {"code": "snake_case_code", "message": "..."} (the
// codes of protocol/codes.go, plus "method_not_allowed" with status 405).
// goim itself answers errors with HTTP 200 and a negative numeric code
// (-400, -500); we do not: a goim client that only checks code != 0 still
// sees the failure. Successful push API answers keep goim's shape:
// {"code": 0, "message": "", "data": ...}.
//
// # Push API access
//
// With Config.AdminKey set, every /goim/ endpoint requires
// "Authorization: Bearer <AdminKey>" (401 unauthorized otherwise). With no
// key, they serve only requests whose remote address is loopback
// (127.0.0.0/8, ::1) and answer 403 forbidden to others. Behind a reverse
// proxy on the same host every request looks local: set an AdminKey there.
//
// # Relations
//
// Who may do what with friends, blocks and groups is one table,
// permissionRules in permissions.go, enforced by the single function
// authorize and rendered into docs/permissions.md (tests keep the file, the
// table and the HTTP behaviour equal, row by row). After every committed
// change the handler tells the RelationCache of Deps (if any) what is stale
// and publishes Op 22 events (friend_request, friend_added, friend_removed,
// group_changed; docs/protocol.md "Events") to every online device of the
// users concerned: their sessions are resolved in the registry and one Keys
// push per comet is published on the bus. Cache and event failures are
// logged and counted; the change stands.
//
// # Messaging
//
// Op 4 and POST /api/v1/messages share one validation path (send.go); the
// messages are stored by a group committer (committer.go: one goroutine
// batching concurrent sends into one store.Messages.AppendMessages call,
// adaptively, no timer) and the SendAck is answered only after the commit.
// A fan-out goroutine then publishes the Op 22 message events in commit
// order. Sync (Op 18), acks (Op 20), typing (Op 23), recall and the
// conversation endpoints are in sync.go, ack.go, typing.go, recall.go and
// api_messages.go. The goroutines start with the first message and stop in
// Service.Close. Guarantees and how they are kept: docs/messaging.md.
//
// # Bus keys
//
// Keys pushes are grouped per comet server, one message per server keyed by
// the server name; room pushes are keyed by the room key; broadcasts share
// the key "broadcast". Pushes to one target therefore keep their order.
package logic

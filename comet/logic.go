package comet

import (
	"context"
	"errors"
	"time"

	"github.com/goimdev/goim/protocol"
)

// Logic is what a comet needs from the logic tier. In the one-process server
// it is the embedded logic service; in the distributed mode a Kitex client.
// Every method may be called concurrently.
type Logic interface {
	// Connect authenticates the Op 7 body of a new connection. An error
	// closes the connection with Op 6: the code of a *CloseError, or
	// "unauthorized" for any other error.
	Connect(ctx context.Context, req *ConnectRequest) (*ConnectReply, error)
	// Disconnect tells logic that connection connID, authenticated by
	// Connect, is gone. The comet calls it for every connection Connect
	// accepted, including one replaced by a newer connection with the same
	// key: logic must remove the key's session only while it is still
	// connID's (session.Registry.Remove does).
	Disconnect(ctx context.Context, server string, userID int64, key, connID string) error
	// Heartbeat refreshes connection connID's session. The comet calls it at
	// most once per heartbeat interval per connection, when the connection
	// reads anything (a packet or a WebSocket frame), not for every Op 2.
	Heartbeat(ctx context.Context, server string, userID int64, key, connID string) error
	// RoomJoined is called, before the join is acknowledged, when a room gets
	// its first member on this comet, so that room pushes sent after the
	// client received Op 13 reach it. Rooms that empty are reported by the
	// next RenewOnline.
	RoomJoined(ctx context.Context, server, room string) error
	// RenewOnline reports this comet's load and room online counts, and
	// returns the online count of every room over all comets (used to answer
	// heartbeats). The comet calls it periodically.
	RenewOnline(ctx context.Context, report *OnlineReport) (map[string]int32, error)
	// Receive handles an IM op from an authenticated connection (ops 4, 18,
	// 20, 23 and any op the comet does not handle itself). It returns the
	// reply packet to write on that connection, or nil when the reply will be
	// pushed later (e.g. an asynchronous SendAck through PushKeys). An op
	// that logic does not know is answered with the same op and Seq and the
	// body {"code":"unknown_op",...}.
	Receive(ctx context.Context, req *ReceiveRequest) (*protocol.Packet, error)
}

// HeartbeatBatcher is implemented by a Logic that refreshes the sessions of
// many connections in one call. The comet then collects its connections'
// heartbeats and sends them every Config.HeartbeatFlush (one RPC per comet
// and flush instead of one per connection, and no RPC on a reader's path).
type HeartbeatBatcher interface {
	Heartbeats(ctx context.Context, server string, conns []ConnRef) error
}

// ConnRef identifies an authenticated connection of a comet.
type ConnRef struct {
	UserID int64
	Key    string
	ConnID string
}

// ConnectRequest carries a new connection's Op 7.
type ConnectRequest struct {
	Server     string // the comet's node name
	RemoteAddr string // client ip:port
	Transport  string // "tcp" or "ws"
	Body       []byte // the Op 7 body (AuthReq JSON, or goim's legacy form)
	QueryToken string // WebSocket only: the token from the upgrade's query string
	// ConnID identifies this connection: unique per connection of the comet
	// process and never reused (node name, a random boot id and a counter).
	// Disconnect and Heartbeat carry it.
	ConnID string
}

// ConnectReply is the result of a successful Connect.
type ConnectReply struct {
	UserID    int64
	Key       string        // the connection's routing key (device key)
	Room      string        // room to join at once ("" for none)
	Platform  string        // ios, android, web, pc
	Accepts   []int32       // business ops this connection accepts
	Heartbeat time.Duration // heartbeat interval announced to the client; the comet closes after 3x silence
	Body      []byte        // the AuthReply JSON body to send with Op 8
}

// ReceiveRequest carries one client packet to logic.
type ReceiveRequest struct {
	Server string
	UserID int64
	Key    string
	Packet protocol.Packet // Body is only valid during the call
	// Replies is set by an in-process comet for Op 4 only (nil over RPC):
	// the connection's path for a reply that Receive sends after it
	// returned (see AsyncReplies).
	Replies AsyncReplies
}

// AsyncReplies lets Logic.Receive answer an Op 4 after it returned, so
// that the comet reads the connection's next packet while the message is
// being committed (the one-process server's SendAck). A Receive that
// answers this way calls Later before it returns nil, and then Reply
// exactly once, from any goroutine, with the whole reply packet (Ver and
// Seq included). The comet keeps the connection's replies in request
// order: a reply returned by Receive, and the call of Receive for any op
// other than Op 4, wait until every reply announced by Later was queued.
type AsyncReplies interface {
	// Later announces a reply to come. It waits while the connection has
	// maxPendingReplies replies announced and not yet queued.
	Later()
	// Reply queues the announced reply p.
	Reply(p protocol.Packet)
}

// OnlineReport is a comet's periodic report.
type OnlineReport struct {
	Server string
	// TakenAt is when the comet began the report, before it took the room
	// snapshot: rooms announced by RoomJoined after it may be missing from
	// Rooms and must not be forgotten because of this report.
	TakenAt time.Time
	TCPAddr string // advertised client addresses
	WSAddr  string
	Conns   int32            // authenticated connections
	IPs     int32            // distinct client IPs
	Rooms   map[string]int32 // room -> local online count (non-empty rooms only)
}

// CloseError is an error that closes a connection with a specific Op 6 code.
type CloseError struct {
	Code   string
	Reason string
}

func (e *CloseError) Error() string { return e.Code + ": " + e.Reason }

// CloseCode returns the Op 6 code for err: the code of a *CloseError in its
// chain, or "unauthorized".
func CloseCode(err error) string {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return protocol.CodeUnauthorized
}

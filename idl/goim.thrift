// RPC contracts between the GoIM processes in the distributed mode.
//
//   comet -> logic: service Logic  (the Go interface comet.Logic)
//   job   -> comet: service Comet  (the Go interface job.Comet, plus Rooms)
//
// logic and job talk to each other only through Kafka.
// Packet bodies and room batches travel as binary, never re-encoded.
// `make gen` regenerates idl/kitex_gen; `make gen-check` fails when it is stale.

namespace go goimrpc

// One protocol packet (PROTOCOL.md): the header fields and the raw body.
struct Packet {
    1: i16 ver
    2: i32 op
    3: i32 seq
    4: binary body
}

// A refused connection: the comet closes it with Op 6 carrying code.
exception CloseError {
    1: string code
    2: string reason
}

struct ConnectRequest {
    1: string server        // the comet's node name
    2: string remote_addr   // client ip:port
    3: string transport     // "tcp" or "ws"
    4: binary body          // the Op 7 body
    5: string query_token   // WebSocket only
    6: string conn_id       // unique per connection, never reused
}

struct ConnectReply {
    1: i64 user_id
    2: string key
    3: string room
    4: string platform
    5: list<i32> accepts
    6: i64 heartbeat_ns     // heartbeat interval in nanoseconds
    7: binary body          // the Op 8 AuthReply body
}

// Identifies one authenticated connection (Disconnect, Heartbeat).
struct ConnRef {
    1: string server
    2: i64 user_id
    3: string key
    4: string conn_id
}

struct OnlineReport {
    1: string server
    2: i64 taken_at_unix_nano   // when the comet began the report
    3: string tcp_addr
    4: string ws_addr
    5: i32 conns
    6: i32 ips
    7: map<string, i32> rooms   // room -> local online count
}

struct ReceiveRequest {
    1: string server
    2: i64 user_id
    3: string key
    4: Packet packet
}

// One entry of PushKeysBatch: packet for the connections with keys.
struct KeysPush {
    1: list<string> keys
    2: Packet packet
}

struct ReceiveReply {
    1: optional Packet reply    // unset: the reply is pushed later
}

service Logic {
    ConnectReply Connect(1: ConnectRequest req) throws (1: CloseError refused)
    void Disconnect(1: ConnRef conn)
    void Heartbeat(1: ConnRef conn)
    void Heartbeats(1: string server, 2: list<ConnRef> conns)  // many connections of one comet at once
    void RoomJoined(1: string server, 2: string room)
    map<string, i32> RenewOnline(1: OnlineReport report)   // room -> online over all comets
    ReceiveReply Receive(1: ReceiveRequest req)
}

service Comet {
    void PushKeys(1: list<string> keys, 2: Packet packet)
    // Many PushKeys in one call, delivered in list order: a connection named
    // by several entries receives their packets in that order.
    void PushKeysBatch(1: list<KeysPush> pushes)
    void PushRoom(1: string room, 2: binary batch)         // an Op 9 body
    void Broadcast(1: Packet packet, 2: i32 speed)         // speed: connections/s, 0 no limit
    map<string, i32> Rooms()                                // room -> local online count
}

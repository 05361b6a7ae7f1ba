package loadgen

import (
	"time"
)

// Transport names.
const (
	TransportTCP = "tcp"
	TransportWS  = "ws"
)

// ConnectSpec tells a worker which connections to open. The driver splits
// UserIDs between workers; everything else is shared.
type ConnectSpec struct {
	// Addr is the comet address (host:port) of the chosen transport.
	Addr string `json:"addr"`
	// Transport is "tcp" (default) or "ws".
	Transport string `json:"transport"`
	// WSPath is the WebSocket endpoint path. Default "/sub".
	WSPath string `json:"ws_path,omitempty"`
	// Secret is the server's JWT secret: the worker mints one token per
	// connection. It travels over the worker's stdin, never on a command line.
	Secret string `json:"secret"`
	// Issuer is the JWT issuer claim. Default "goim".
	Issuer string `json:"issuer,omitempty"`
	// UserIDs get one connection each, in order.
	UserIDs []int64 `json:"user_ids"`
	// Room is the room joined at auth, e.g. "live://bench"; empty joins none.
	Room string `json:"room,omitempty"`
	// Accepts lists the business ops the connections accept.
	Accepts []int32 `json:"accepts,omitempty"`
	// Platform sent in Auth. Default "pc".
	Platform string `json:"platform,omitempty"`
	// Rate is the connect rate of this worker in connections per second;
	// 0 means as fast as MaxInFlight allows.
	Rate float64 `json:"rate"`
	// MaxInFlight bounds the handshakes under way at once. Default 512.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// HandshakeTimeout bounds dial + auth of one connection. Default 15s.
	HandshakeTimeout time.Duration `json:"handshake_timeout,omitempty"`
	// Heartbeat overrides the heartbeat interval announced by the server in
	// AuthReply; 0 uses the server's.
	Heartbeat time.Duration `json:"heartbeat,omitempty"`
	// TokenTTL is the lifetime of the minted tokens. Default 24h.
	TokenTTL time.Duration `json:"token_ttl,omitempty"`
}

func (s *ConnectSpec) setDefaults() {
	if s.Transport == "" {
		s.Transport = TransportTCP
	}
	if s.WSPath == "" {
		s.WSPath = "/sub"
	}
	if s.Issuer == "" {
		s.Issuer = "goim"
	}
	if s.Platform == "" {
		s.Platform = "pc"
	}
	if s.MaxInFlight <= 0 {
		s.MaxInFlight = 512
	}
	if s.HandshakeTimeout <= 0 {
		s.HandshakeTimeout = 15 * time.Second
	}
	if s.TokenTTL <= 0 {
		s.TokenTTL = 24 * time.Hour
	}
}

// Stats are a worker's counters (or their sum over workers). Counters are
// cumulative unless reset with a stats request.
type Stats struct {
	// Attempted connections (dial started).
	Attempted int64 `json:"attempted"`
	// Authed connections (AuthReply received), cumulative.
	Authed int64 `json:"authed"`
	// Failed handshakes (dial, auth write or refused auth).
	Failed int64 `json:"failed"`
	// Open authenticated connections now.
	Open int64 `json:"open"`
	// Closed counts authenticated connections that ended before the
	// driver asked to close them (server close, read error).
	Closed int64 `json:"closed"`
	// Errors maps a short failure reason to its count (bounded).
	Errors map[string]int64 `json:"errors,omitempty"`
	// Disconnects maps the code of every Op 6 received to its count.
	Disconnects map[string]int64 `json:"disconnects,omitempty"`
	// Delivered counts business-op packets (op >= 1000) received.
	Delivered int64 `json:"delivered"`
	// Reordered counts deliveries whose sequence number is below one the
	// connection already received (expected when the pusher has several
	// requests in flight); Duplicates those it had already received (within
	// the last 1024 sequence numbers). Delivered includes both.
	Reordered  int64 `json:"reordered"`
	Duplicates int64 `json:"duplicates"`
	// LastRecvUnixNano is the receive time of the newest delivery.
	LastRecvUnixNano int64 `json:"last_recv_unix_nano,omitempty"`
	// FirstRecvUnixNano is the receive time of the oldest delivery since
	// the last reset.
	FirstRecvUnixNano int64 `json:"first_recv_unix_nano,omitempty"`
	// HeartbeatsSent, HeartbeatReplies and HeartbeatErrors count Op 2
	// writes, Op 3 replies and failed heartbeat writes.
	HeartbeatsSent   int64 `json:"heartbeats_sent"`
	HeartbeatReplies int64 `json:"heartbeat_replies"`
	HeartbeatErrors  int64 `json:"heartbeat_errors"`
	// HeartbeatMS is the heartbeat interval in use (the server's announced
	// heartbeat_s unless overridden); the largest over workers.
	HeartbeatMS int64 `json:"heartbeat_ms"`
	// HeartbeatLagMS is, since the last reset, the most a heartbeat was
	// written later than one interval after the previous one (a CPU-starved
	// worker shows here; the server cuts at 3 intervals); the largest over
	// workers.
	HeartbeatLagMS int64 `json:"heartbeat_lag_ms"`
	// OtherPackets counts packets of any other op.
	OtherPackets int64 `json:"other_packets"`
	// Latency is the push-to-receive latency histogram (nanoseconds).
	Latency HistSnapshot `json:"latency"`
	// HandshakeLatency is the dial-to-AuthReply histogram (nanoseconds).
	HandshakeLatency HistSnapshot `json:"handshake_latency"`
	// RSSBytes is the worker process's resident set (summed over workers).
	RSSBytes int64 `json:"rss_bytes"`
	// Workers is how many workers were summed.
	Workers int `json:"workers"`
}

// Add adds o's counters to s. Histogram snapshots are merged through Hist.
func (s *Stats) Add(o Stats) {
	s.Attempted += o.Attempted
	s.Authed += o.Authed
	s.Failed += o.Failed
	s.Open += o.Open
	s.Closed += o.Closed
	s.Errors = addCounts(s.Errors, o.Errors)
	s.Disconnects = addCounts(s.Disconnects, o.Disconnects)
	s.Delivered += o.Delivered
	s.Reordered += o.Reordered
	s.Duplicates += o.Duplicates
	s.LastRecvUnixNano = max(s.LastRecvUnixNano, o.LastRecvUnixNano)
	if o.FirstRecvUnixNano != 0 && (s.FirstRecvUnixNano == 0 || o.FirstRecvUnixNano < s.FirstRecvUnixNano) {
		s.FirstRecvUnixNano = o.FirstRecvUnixNano
	}
	s.HeartbeatsSent += o.HeartbeatsSent
	s.HeartbeatReplies += o.HeartbeatReplies
	s.HeartbeatErrors += o.HeartbeatErrors
	s.HeartbeatMS = max(s.HeartbeatMS, o.HeartbeatMS)
	s.HeartbeatLagMS = max(s.HeartbeatLagMS, o.HeartbeatLagMS)
	s.OtherPackets += o.OtherPackets
	s.Latency = mergeSnapshots(s.Latency, o.Latency)
	s.HandshakeLatency = mergeSnapshots(s.HandshakeLatency, o.HandshakeLatency)
	s.RSSBytes += o.RSSBytes
	s.Workers += max(o.Workers, 1)
}

func addCounts(dst, src map[string]int64) map[string]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]int64, len(src))
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

func mergeSnapshots(a, b HistSnapshot) HistSnapshot {
	if b.Count == 0 {
		return a
	}
	if a.Count == 0 {
		return b
	}
	h := NewHist()
	h.MergeSnapshot(a)
	h.MergeSnapshot(b)
	return h.Snapshot()
}

// Progress is what a worker reports while it connects.
type Progress struct {
	Worker    int   `json:"worker"`
	Attempted int64 `json:"attempted"`
	Authed    int64 `json:"authed"`
	Failed    int64 `json:"failed"`
	Target    int64 `json:"target"`
}

// request is one driver-to-worker line.
type request struct {
	ID      int64        `json:"id"`
	Cmd     string       `json:"cmd"` // connect, stats, close_conns
	Connect *ConnectSpec `json:"connect,omitempty"`
	// Reset zeroes the delivery counters and histograms after a stats
	// snapshot was taken.
	Reset bool `json:"reset,omitempty"`
}

// Worker commands.
const (
	cmdConnect    = "connect"
	cmdStats      = "stats"
	cmdCloseConns = "close_conns"
)

// message is one worker-to-driver line: a reply to a request (ID > 0) or a
// progress event (Type "progress").
type message struct {
	Type     string    `json:"type"` // reply, progress, log
	ID       int64     `json:"id,omitempty"`
	Error    string    `json:"error,omitempty"`
	Stats    *Stats    `json:"stats,omitempty"`
	Progress *Progress `json:"progress,omitempty"`
	Log      string    `json:"log,omitempty"`
}

// Message types.
const (
	msgReply    = "reply"
	msgProgress = "progress"
)

// maxLine bounds one JSON line between driver and worker (a stats reply
// with a full histogram is about 100 KB; a connect request carries up to
// ~15,000 user ids).
const maxLine = 16 << 20

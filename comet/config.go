package comet

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/goimdev/goim/protocol"
)

// Config configures a Server. Decode it over DefaultConfig(); New gives any
// numeric or duration field left at zero its default (the listen and
// advertise addresses excepted: there "" means disabled / the bound address).
type Config struct {
	// Node is this comet's name, as reported to logic and in AuthReply.
	// Default: "comet-" + hostname, or "comet-1" without a hostname.
	Node string `yaml:"node"`
	// TCPAddr and WSAddr are the listen addresses of the TCP and WebSocket
	// transports. "" disables a transport (at least one must be set);
	// "127.0.0.1:0" picks a free port. Default ":3101" and ":3102".
	TCPAddr string `yaml:"tcp_addr"`
	WSAddr  string `yaml:"ws_addr"`
	// AdvertiseTCP and AdvertiseWS are the addresses reported to logic in
	// RenewOnline. Default: the bound listen address.
	AdvertiseTCP string `yaml:"advertise_tcp"`
	AdvertiseWS  string `yaml:"advertise_ws"`

	// MaxBody limits the body of a client-to-server packet; a larger PackLen
	// is answered with Op 6 packet_too_large and a close. Default 64 KiB.
	MaxBody int `yaml:"max_body"`
	// MaxPreAuthBytes limits what a connection may send before it is
	// authenticated (the WebSocket upgrade request included). Default 8 KiB.
	MaxPreAuthBytes int `yaml:"max_pre_auth_bytes"`
	// MaxConnsPerIP limits open connections per client IP (Op 6
	// too_many_connections). 0, the default, means unlimited: benchmark
	// tools open 100k connections from one address. Set it (e.g. 10000)
	// when clients come from the internet.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`

	// HandshakeTimeout closes (Op 6 handshake_timeout) a connection that is
	// not authenticated this long after accept. Default 5s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// Heartbeat is the heartbeat interval announced to clients unless Logic's
	// ConnectReply.Heartbeat says otherwise; a connection that sends nothing
	// for 3x its interval is closed (Op 6 idle_timeout). Logic.Heartbeat is
	// called at most once per interval per connection. Default 30s.
	Heartbeat time.Duration `yaml:"heartbeat"`

	// OutQueue bounds a connection's outbound queue in packets (a room batch
	// counts as one), OutQueueBytes in bytes; what is queued but not yet
	// handed to the socket counts. Exceeding either closes the connection
	// as a slow consumer. Defaults 1024 packets and 1 MiB.
	OutQueue      int `yaml:"out_queue"`
	OutQueueBytes int `yaml:"out_queue_bytes"`
	// WriteTimeout is how long one flush may block on a full socket before
	// the connection is cut as a slow consumer. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`

	// Buckets is the number of shards for connections (by routing key) and
	// rooms (by name). Default 32.
	Buckets int `yaml:"buckets"`
	// RenewInterval is the period of Logic.RenewOnline. Default 10s.
	RenewInterval time.Duration `yaml:"renew_interval"`
	// LogicTimeout bounds each Logic call other than Connect (which is
	// bounded by the handshake timeout). Default 5s.
	LogicTimeout time.Duration `yaml:"logic_timeout"`
	// HeartbeatFlush is how often the connections' session refreshes are
	// sent, in one call, to a Logic that takes them in batches
	// (HeartbeatBatcher: the RPC client of the distributed mode). Default 1s.
	HeartbeatFlush time.Duration `yaml:"heartbeat_flush"`

	// DrainWindow is the time over which Shutdown spreads its Op 6
	// server_draining messages; each one's reconnect_after_ms is drawn at
	// random from [0, DrainWindow). Shutdown shortens it to half the time left
	// before its context's deadline. Default 5s; negative: all at once.
	DrainWindow time.Duration `yaml:"drain_window"`
	// DrainAddrs are other nodes' client addresses, sent in Op 6
	// server_draining "addrs". Default none.
	DrainAddrs []string `yaml:"drain_addrs"`
}

// Limits beyond which a configuration is refused.
const (
	maxMaxBody = 16 << 20
	// maxAccepts bounds a connection's accepts list (Op 7 and Op 14).
	maxAccepts = protocol.MaxAccepts
)

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Node:             defaultNode(),
		TCPAddr:          ":3101",
		WSAddr:           ":3102",
		MaxBody:          protocol.DefaultMaxBody,
		MaxPreAuthBytes:  8 << 10,
		MaxConnsPerIP:    0,
		HandshakeTimeout: 5 * time.Second,
		Heartbeat:        30 * time.Second,
		OutQueue:         1024,
		OutQueueBytes:    1 << 20,
		WriteTimeout:     10 * time.Second,
		Buckets:          32,
		RenewInterval:    10 * time.Second,
		LogicTimeout:     5 * time.Second,
		HeartbeatFlush:   time.Second,
		DrainWindow:      5 * time.Second,
	}
}

func defaultNode() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "comet-1"
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	return "comet-" + h
}

// normalize fills zero fields with defaults and validates the result.
func (c Config) normalize() (Config, error) {
	d := DefaultConfig()
	if c.Node == "" {
		c.Node = d.Node
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.MaxBody, d.MaxBody)
	setInt(&c.MaxPreAuthBytes, d.MaxPreAuthBytes)
	setInt(&c.OutQueue, d.OutQueue)
	setInt(&c.OutQueueBytes, d.OutQueueBytes)
	setInt(&c.Buckets, d.Buckets)
	setDur(&c.HandshakeTimeout, d.HandshakeTimeout)
	setDur(&c.Heartbeat, d.Heartbeat)
	setDur(&c.WriteTimeout, d.WriteTimeout)
	setDur(&c.RenewInterval, d.RenewInterval)
	setDur(&c.LogicTimeout, d.LogicTimeout)
	setDur(&c.HeartbeatFlush, d.HeartbeatFlush)
	setDur(&c.DrainWindow, d.DrainWindow)
	if c.DrainWindow < 0 {
		c.DrainWindow = 0
	}

	var errs []error
	if c.TCPAddr == "" && c.WSAddr == "" {
		errs = append(errs, errors.New("no listen address (tcp_addr and ws_addr are both empty)"))
	}
	if c.MaxBody < 0 || c.MaxBody > maxMaxBody {
		errs = append(errs, fmt.Errorf("max_body %d out of range (1..%d)", c.MaxBody, maxMaxBody))
	}
	if c.MaxPreAuthBytes < protocol.HeaderLen {
		errs = append(errs, fmt.Errorf("max_pre_auth_bytes %d below the header size", c.MaxPreAuthBytes))
	}
	if c.MaxConnsPerIP < 0 {
		errs = append(errs, fmt.Errorf("max_conns_per_ip %d is negative", c.MaxConnsPerIP))
	}
	for name, v := range map[string]int{"out_queue": c.OutQueue, "out_queue_bytes": c.OutQueueBytes, "buckets": c.Buckets} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative", name, v))
		}
	}
	for name, v := range map[string]time.Duration{
		"handshake_timeout": c.HandshakeTimeout, "heartbeat": c.Heartbeat, "write_timeout": c.WriteTimeout,
		"renew_interval": c.RenewInterval, "logic_timeout": c.LogicTimeout,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name, v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("comet: invalid config: %w", err)
	}
	return c, nil
}

package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/goimdev/goim/protocol"
)

// Transports.
const (
	TransportTCP = "tcp"
	TransportWS  = "ws"
)

// Config configures a Client. The zero value of every field means its
// documented default, so Config{Addr: a, Token: t} is a working config.
type Config struct {
	// Addr is the comet address, "host:port" (TCP port 3101 or WebSocket
	// port 3102 by default on the server). Required unless Addrs is set.
	Addr string `yaml:"addr"`
	// Addrs are alternative addresses, tried in order after Addr by Dial and
	// by reconnects. Addresses learnt from an Op 6 Disconnect are tried
	// before all of them.
	Addrs []string `yaml:"addrs"`
	// Transport is "tcp" (default) or "ws".
	Transport string `yaml:"transport"`
	// WSPath is the WebSocket endpoint path. Default "/sub".
	WSPath string `yaml:"ws_path"`
	// TokenInQuery (WebSocket only) sends the token in the upgrade's query
	// string (/sub?token=...), as a browser would, and leaves the token of
	// the Auth packet empty.
	TokenInQuery bool `yaml:"token_in_query"`

	// Token is the JWT from POST /api/v1/auth/login.
	Token string `yaml:"token"`
	// Key is the device key. Empty: the server makes one; the client keeps
	// the one from AuthReply and reuses it on reconnects.
	Key string `yaml:"key"`
	// Platform is "ios", "android", "web" or "pc". Optional.
	Platform string `yaml:"platform"`
	// Room is the room to join at auth, e.g. "live://1000". Optional;
	// JoinRoom changes it (and reconnects rejoin the current one).
	Room string `yaml:"room"`
	// Accepts are the business ops (>= 1000) this connection subscribes to
	// at auth; Sub and Unsub change the set (and reconnects resubscribe).
	Accepts []int32 `yaml:"accepts"`

	// Heartbeat is the interval of the background heartbeat (Op 2).
	// Default: the server's heartbeat_s from AuthReply, else 30s. A
	// connection on which nothing arrives for max(Heartbeat, RequestTimeout)
	// after a heartbeat was sent is considered dead and closed
	// (ErrHeartbeatTimeout).
	Heartbeat time.Duration `yaml:"heartbeat"`
	// DialTimeout bounds one connection attempt: connect, WebSocket upgrade
	// and the Auth/AuthReply exchange. Default 10s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// RequestTimeout bounds a request whose context has no deadline.
	// Default 10s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// WriteTimeout bounds one flush of the write buffer to the socket; a
	// flush that takes longer closes the connection. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`

	// Reconnect makes the client redial when the connection drops or the
	// server sends Op 6 (except unauthorized, replaced and kicked), with
	// exponential backoff and full jitter between MinBackoff and MaxBackoff,
	// honouring reconnect_after_ms. Default off: the client ends with the
	// connection.
	Reconnect bool `yaml:"reconnect"`
	// MinBackoff is the backoff cap of the first reconnect attempt; it
	// doubles on every failed attempt. Default 200ms.
	MinBackoff time.Duration `yaml:"min_backoff"`
	// MaxBackoff caps the backoff. Default 30s.
	MaxBackoff time.Duration `yaml:"max_backoff"`

	// InboundBuffer is the capacity of the Packets channel. Default 1024.
	// When it is full the reader stops reading the socket (backpressure):
	// replies are then not processed either, and the server eventually cuts
	// the connection as slow_consumer.
	InboundBuffer int `yaml:"inbound_buffer"`
	// ReadBufferSize is the initial size of the read buffer; it grows to
	// hold a large packet and shrinks back afterwards. Default 4096.
	ReadBufferSize int `yaml:"read_buffer_size"`
	// MaxReceiveBody limits the body of a packet from the server (an Op 9
	// batch included); a larger one closes the connection. Default 16 MiB.
	MaxReceiveBody int `yaml:"max_receive_body"`
	// MaxSendBody limits the body of a packet to the server; larger bodies
	// are refused with ErrBodyTooLarge before anything is sent. Default
	// 64 KiB, the server's default limit.
	MaxSendBody int `yaml:"max_send_body"`
	// MaxPendingWrite limits the bytes queued for the writer; senders beyond
	// it wait (until their context ends). Default 1 MiB.
	MaxPendingWrite int `yaml:"max_pending_write"`

	// OnStateChange, if set, is called on every connection state change
	// (lost, reconnecting, connected again, closed). It runs on the
	// client's reader goroutine: it must return quickly and must not call
	// Close.
	OnStateChange func(StateChange) `yaml:"-"`
	// RefreshToken, if set, is called before every reconnect attempt to get
	// a fresh token (JWTs expire); its error aborts that attempt.
	RefreshToken func(ctx context.Context) (string, error) `yaml:"-"`
	// Logger receives the SDK's logs. Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// Dialer, if set, opens the network connection (tests, benchmarks,
	// proxies). Default a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error) `yaml:"-"`
}

// Defaults of Config.
const (
	DefaultWSPath          = "/sub"
	DefaultHeartbeat       = 30 * time.Second
	DefaultDialTimeout     = 10 * time.Second
	DefaultRequestTimeout  = 10 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultMinBackoff      = 200 * time.Millisecond
	DefaultMaxBackoff      = 30 * time.Second
	DefaultInboundBuffer   = 1024
	DefaultReadBufferSize  = 4096
	DefaultMaxReceiveBody  = 16 << 20
	DefaultMaxSendBody     = protocol.DefaultMaxBody
	DefaultMaxPendingWrite = 1 << 20
)

// DefaultConfig returns a Config with every default filled in (Addr, Token
// and the other connection parameters left empty).
func DefaultConfig() Config {
	return Config{
		Transport:       TransportTCP,
		WSPath:          DefaultWSPath,
		DialTimeout:     DefaultDialTimeout,
		RequestTimeout:  DefaultRequestTimeout,
		WriteTimeout:    DefaultWriteTimeout,
		MinBackoff:      DefaultMinBackoff,
		MaxBackoff:      DefaultMaxBackoff,
		InboundBuffer:   DefaultInboundBuffer,
		ReadBufferSize:  DefaultReadBufferSize,
		MaxReceiveBody:  DefaultMaxReceiveBody,
		MaxSendBody:     DefaultMaxSendBody,
		MaxPendingWrite: DefaultMaxPendingWrite,
	}
}

// withDefaults returns cfg with zero fields set to their defaults, and
// validates it.
func (cfg Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if cfg.Transport == "" {
		cfg.Transport = d.Transport
	}
	if cfg.WSPath == "" {
		cfg.WSPath = d.WSPath
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur(&cfg.DialTimeout, d.DialTimeout)
	setDur(&cfg.RequestTimeout, d.RequestTimeout)
	setDur(&cfg.WriteTimeout, d.WriteTimeout)
	setDur(&cfg.MinBackoff, d.MinBackoff)
	setDur(&cfg.MaxBackoff, d.MaxBackoff)
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&cfg.InboundBuffer, d.InboundBuffer)
	setInt(&cfg.ReadBufferSize, d.ReadBufferSize)
	setInt(&cfg.MaxReceiveBody, d.MaxReceiveBody)
	setInt(&cfg.MaxSendBody, d.MaxSendBody)
	setInt(&cfg.MaxPendingWrite, d.MaxPendingWrite)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadBufferSize < protocol.HeaderLen {
		cfg.ReadBufferSize = protocol.HeaderLen
	}

	switch cfg.Transport {
	case TransportTCP, TransportWS:
	default:
		return cfg, fmt.Errorf("client: unknown transport %q (want tcp or ws)", cfg.Transport)
	}
	if cfg.Addr == "" && len(cfg.Addrs) == 0 {
		return cfg, errors.New("client: no address (Config.Addr)")
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		return cfg, fmt.Errorf("client: MaxBackoff %v below MinBackoff %v", cfg.MaxBackoff, cfg.MinBackoff)
	}
	cfg.Accepts = append([]int32(nil), cfg.Accepts...)
	cfg.Addrs = append([]string(nil), cfg.Addrs...)
	return cfg, nil
}

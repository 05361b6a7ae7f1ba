// Package config loads GoIM's configuration: built-in defaults, then a YAML
// file, then GOIM_* environment variables, then command-line flags (each
// later source overrides the earlier ones). Every component keeps its own
// Config struct with documented defaults; this package only assembles them.
package config

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/msgcache"
	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/mysql"
	"github.com/goimdev/goim/internal/store/sqlite"
	"github.com/goimdev/goim/internal/unread"
	"github.com/goimdev/goim/job"
	"github.com/goimdev/goim/logic"
)

// Config is the configuration of a GoIM process.
type Config struct {
	// DataDir holds the embedded backends' files (SQLite database, JWT
	// secret, blobs). Default "./data".
	DataDir string `yaml:"data_dir"`
	// HTTPAddr is the HTTP API, push API, health and metrics address.
	// Default ":3111" (goim's logic HTTP port).
	HTTPAddr string `yaml:"http_addr"`
	// RPCAddr is the RPC listen address of the distributed mode. Default
	// ":3119". The one-process server does not listen on it.
	RPCAddr string `yaml:"rpc_addr"`
	// JWTSecret signs and verifies tokens (HS256, at least 32 bytes). Empty:
	// a random secret is created once and kept in DataDir/jwt.secret.
	JWTSecret string `yaml:"jwt_secret"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json. Default text.
	LogFormat string `yaml:"log_format"`
	// ShutdownTimeout bounds a graceful shutdown (drain included). Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// Store selects the store of record.
	Store StoreConfig `yaml:"store"`
	// Cache selects the relation cache of the send path.
	Cache CacheConfig `yaml:"cache"`

	Comet comet.Config `yaml:"comet"`
	Logic logic.Config `yaml:"logic"`
	Job   job.Config   `yaml:"job"`

	// Cluster configures the distributed mode (goim comet, logic, job).
	Cluster ClusterConfig `yaml:"cluster"`
}

// ClusterConfig configures the distributed mode: how the processes find
// each other and the shared backends. The one-process server ignores it.
type ClusterConfig struct {
	// Discovery is "etcd" (processes register with leases and watch each
	// other) or "static" (fixed address lists below). Default: etcd when
	// EtcdEndpoints is set, else static.
	Discovery string `yaml:"discovery"`
	// EtcdEndpoints is a comma-separated list of etcd client URLs, e.g.
	// "http://127.0.0.1:2379".
	EtcdEndpoints string `yaml:"etcd_endpoints"`
	// EtcdPrefix is the key prefix of the registrations. Default "/goim/".
	EtcdPrefix string `yaml:"etcd_prefix"`
	// LeaseTTL is the etcd lease of a registration: a process killed
	// without deregistering disappears after it. Default 5s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// LogicAddrs is the static list of logic RPC addresses (comets use it),
	// comma-separated.
	LogicAddrs string `yaml:"logic_addrs"`
	// CometAddrs is the static list of comets for the jobs,
	// comma-separated name=rpc_host:port pairs.
	CometAddrs string `yaml:"comet_addrs"`
	// KafkaBrokers is a comma-separated list of Kafka brokers (logic and
	// job). Required in the distributed mode.
	KafkaBrokers string `yaml:"kafka_brokers"`
	// Kafka tunes the producer and consumers; Brokers is KafkaBrokers.
	Kafka bus.KafkaConfig `yaml:"kafka"`
	// AdvertiseRPC is the RPC address registered in discovery. Default:
	// the bound RPC address, with 127.0.0.1 for an unspecified host.
	AdvertiseRPC string `yaml:"advertise_rpc"`
}

// CacheConfig selects the relation cache (is friend, is blocked,
// membership) that the send path reads.
type CacheConfig struct {
	// Driver is "memory" (default: in-process, correct while one logic
	// process changes relations) or "redis" (shared by every logic process).
	Driver string `yaml:"driver"`
	// RedisAddr is the Redis address with driver redis, e.g. "127.0.0.1:6379".
	RedisAddr string `yaml:"redis_addr"`
	// Relations tunes TTLs; Memory and Redis tune the backends.
	Relations relcache.Config       `yaml:"relations"`
	Memory    relcache.MemoryConfig `yaml:"memory"`
	Redis     relcache.RedisConfig  `yaml:"redis"`
	// Messages configures the cache of recent messages of hot
	// conversations (history pages), on the same driver and Redis.
	Messages MessageCacheConfig `yaml:"messages"`
	// Unread configures the unread counters mirrored in Redis with driver
	// redis (internal/unread); with driver memory the store counts.
	Unread unread.Config `yaml:"unread"`
}

// MessageCacheConfig configures the recent-message cache (internal/msgcache).
type MessageCacheConfig struct {
	// Disabled turns the cache off: the store answers every page. Default false.
	Disabled bool                  `yaml:"disabled"`
	Cache    msgcache.Config       `yaml:"cache"`
	Memory   msgcache.MemoryConfig `yaml:"memory"`
	Redis    msgcache.RedisConfig  `yaml:"redis"`
}

// DefaultMessageCacheConfig returns the recent-message cache's defaults.
func DefaultMessageCacheConfig() MessageCacheConfig {
	return MessageCacheConfig{Cache: msgcache.DefaultConfig(), Memory: msgcache.DefaultMemoryConfig(), Redis: msgcache.DefaultRedisConfig()}
}

// StoreConfig selects the store of record.
type StoreConfig struct {
	// Driver is "sqlite" (default: DataDir/goim.db, nothing to install) or
	// "mysql".
	Driver string `yaml:"driver"`
	// MySQL configures the mysql driver; its DSN is required then, e.g.
	// "goim:secret@tcp(127.0.0.1:3306)/goim".
	MySQL mysql.Config `yaml:"mysql"`
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		DataDir:         "./data",
		HTTPAddr:        ":3111",
		RPCAddr:         ":3119",
		LogLevel:        "info",
		LogFormat:       "text",
		ShutdownTimeout: 30 * time.Second,
		Store:           StoreConfig{Driver: "sqlite", MySQL: mysql.DefaultConfig()},
		Cache:           CacheConfig{Driver: "memory", Relations: relcache.DefaultConfig(), Memory: relcache.DefaultMemoryConfig(), Redis: relcache.DefaultRedisConfig(), Messages: DefaultMessageCacheConfig(), Unread: unread.DefaultConfig()},
		Comet:           comet.DefaultConfig(),
		Logic:           logic.DefaultConfig(),
		Job:             job.DefaultConfig(),
		Cluster:         ClusterConfig{EtcdPrefix: "/goim/", LeaseTTL: 5 * time.Second, Kafka: bus.DefaultKafkaConfig()},
	}
}

// setting binds one option to its flag and environment variable.
type setting struct {
	name  string // flag name; the env variable is GOIM_ + upper snake case
	usage string
	ptr   any // *string, *bool, *int, *time.Duration
}

func (c *Config) settings() []setting {
	return []setting{
		{"data-dir", "data directory of the embedded backends", &c.DataDir},
		{"http-addr", "HTTP API / push API / metrics listen address", &c.HTTPAddr},
		{"rpc-addr", "RPC listen address (distributed mode)", &c.RPCAddr},
		{"tcp-addr", "comet TCP listen address (empty disables)", &c.Comet.TCPAddr},
		{"ws-addr", "comet WebSocket listen address (empty disables)", &c.Comet.WSAddr},
		{"node", "this node's name", &c.Comet.Node},
		{"jwt-secret", "JWT HS256 secret (default: generated and kept in the data directory)", &c.JWTSecret},
		{"admin-key", "bearer key required by the /goim push API (default: loopback clients only)", &c.Logic.AdminKey},
		{"insecure-mid-auth", "accept goim's token-less {\"mid\":...} auth (benchmarks only; INSECURE)", &c.Logic.InsecureMidAuth},
		{"store", "store of record: sqlite or mysql", &c.Store.Driver},
		{"mysql-dsn", "MySQL DSN when --store=mysql, e.g. user:pass@tcp(127.0.0.1:3306)/goim", &c.Store.MySQL.DSN},
		{"cache", "relation cache: memory or redis", &c.Cache.Driver},
		{"redis-addr", "Redis address when --cache=redis", &c.Cache.RedisAddr},
		{"log-level", "debug, info, warn or error", &c.LogLevel},
		{"log-format", "text or json", &c.LogFormat},
		{"max-body", "client-to-server body limit in bytes", &c.Comet.MaxBody},
		{"max-conns-per-ip", "connections allowed per client IP (0: unlimited)", &c.Comet.MaxConnsPerIP},
		{"heartbeat", "heartbeat interval announced to clients", &c.Comet.Heartbeat},
		{"handshake-timeout", "time allowed between connect and auth", &c.Comet.HandshakeTimeout},
		{"drain-window", "graceful shutdown: window over which clients are told to reconnect", &c.Comet.DrainWindow},
		{"shutdown-timeout", "upper bound of a graceful shutdown", &c.ShutdownTimeout},
		{"discovery", "distributed mode: etcd or static (default: etcd when --etcd-endpoints is set)", &c.Cluster.Discovery},
		{"etcd-endpoints", "distributed mode: etcd client URLs, comma-separated", &c.Cluster.EtcdEndpoints},
		{"logic-addrs", "distributed mode, static discovery: logic RPC addresses, comma-separated", &c.Cluster.LogicAddrs},
		{"comet-addrs", "distributed mode, static discovery: comets as name=rpc_addr, comma-separated", &c.Cluster.CometAddrs},
		{"kafka-brokers", "distributed mode: Kafka brokers, comma-separated", &c.Cluster.KafkaBrokers},
		{"advertise-rpc", "distributed mode: RPC address registered in discovery", &c.Cluster.AdvertiseRPC},
		{"logic-node", "distributed mode: this logic process's name", &c.Logic.Node},
		{"send-rate", "messages per second one user may send (negative: no limit)", &c.Logic.SendRate},
		{"snowflake-node", "this logic process's Snowflake node id, 0..1023, unique per logic process", &c.Logic.SnowflakeNode},
	}
}

// EnvName returns the environment variable of a flag name.
func EnvName(flagName string) string {
	return "GOIM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Load builds the configuration of a subcommand from args (flags after the
// subcommand name) and the environment (getenv, usually os.Getenv). The
// --config flag or GOIM_CONFIG names a YAML file.
func Load(name string, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Default()
	path := getenv("GOIM_CONFIG")
	if p, ok := preScan(args, "config"); ok {
		path = p
	}
	if path != "" {
		if err := c.loadFile(path); err != nil {
			return c, err
		}
	}
	for _, s := range c.settings() {
		if v := getenv(EnvName(s.name)); v != "" {
			if err := set(s.ptr, v); err != nil {
				return c, fmt.Errorf("%s: %w", EnvName(s.name), err)
			}
		}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", path, "YAML configuration file (env GOIM_CONFIG)")
	for _, s := range c.settings() {
		usage := s.usage + " (env " + EnvName(s.name) + ")"
		switch p := s.ptr.(type) {
		case *string:
			fs.StringVar(p, s.name, *p, usage)
		case *bool:
			fs.BoolVar(p, s.name, *p, usage)
		case *int:
			fs.IntVar(p, s.name, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, s.name, *p, usage)
		case *int64:
			fs.Int64Var(p, s.name, *p, usage)
		case *float64:
			fs.Float64Var(p, s.name, *p, usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return c, c.Validate()
}

// Validate checks the assembled configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is empty"))
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < 32 {
		errs = append(errs, errors.New("jwt_secret must be at least 32 bytes"))
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format %q: want text or json", c.LogFormat))
	}
	switch c.Store.Driver {
	case "sqlite":
	case "mysql":
		if c.Store.MySQL.DSN == "" {
			errs = append(errs, errors.New("store.mysql.dsn is required with store driver mysql"))
		}
	default:
		errs = append(errs, fmt.Errorf("store.driver %q: want sqlite or mysql", c.Store.Driver))
	}
	switch c.Cache.Driver {
	case "memory":
	case "redis":
		if c.Cache.RedisAddr == "" {
			errs = append(errs, errors.New("cache.redis_addr is required with cache driver redis"))
		}
	default:
		errs = append(errs, fmt.Errorf("cache.driver %q: want memory or redis", c.Cache.Driver))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown_timeout must be positive"))
	}
	return errors.Join(errs...)
}

func (c *Config) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(io.LimitReader(f, 1<<20))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// preScan finds -name/--name value or -name=value in args without parsing
// the rest (the file must be read before flags override it).
func preScan(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		t := strings.TrimLeft(a, "-")
		if t == a || len(a)-len(t) > 2 {
			continue
		}
		if v, ok := strings.CutPrefix(t, name+"="); ok {
			return v, true
		}
		if t == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func set(ptr any, v string) error {
	switch p := ptr.(type) {
	case *string:
		*p = v
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return err
		}
		*p = n
	case *float64:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return err
		}
		*p = f
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*p = d
	default:
		return fmt.Errorf("unsupported setting type %T", ptr)
	}
	return nil
}

// OpenStore opens (and migrates) the configured store of record.
func (c *Config) OpenStore(ctx context.Context) (store.Store, error) {
	if c.Store.Driver == "mysql" {
		return mysql.OpenConfig(ctx, c.Store.MySQL)
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	return sqlite.Open(ctx, filepath.Join(c.DataDir, "goim.db"))
}

// OpenCache builds the configured relation cache over src. The returned
// close function releases its connections.
func (c *Config) OpenCache(src relcache.Source) (*relcache.Cache, func() error, error) {
	if c.Cache.Driver != "redis" {
		return relcache.New(relcache.NewMemory(c.Cache.Memory), src, c.Cache.Relations), func() error { return nil }, nil
	}
	rdb := redis.NewClient(&redis.Options{Addr: c.Cache.RedisAddr})
	backend, err := relcache.NewRedis(rdb, c.Cache.Redis)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return relcache.New(backend, src, c.Cache.Relations), rdb.Close, nil
}

// OpenMessageCache builds the configured recent-message cache in front of
// src (nil when disabled): in-process with driver memory, on
// cache.redis_addr with driver redis (then VerifyTail is on: several logic
// processes may write). The returned close function releases its
// connections.
func (c *Config) OpenMessageCache(src store.Messages) (*msgcache.Cache, func() error, error) {
	mc := c.Cache.Messages
	if mc.Disabled {
		return nil, func() error { return nil }, nil
	}
	if c.Cache.Driver != "redis" {
		return msgcache.New(msgcache.NewMemory(mc.Memory), src, mc.Cache), func() error { return nil }, nil
	}
	rdb := redis.NewClient(&redis.Options{Addr: c.Cache.RedisAddr, DialTimeout: time.Second,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: 1})
	backend, err := msgcache.NewRedis(rdb, mc.Redis)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	mc.Cache.VerifyTail = true
	return msgcache.New(backend, src, mc.Cache), rdb.Close, nil
}

// OpenUnread opens the unread-counter mirror of driver redis (nil
// without Redis: the store counts) and returns a close function.
func (c *Config) OpenUnread(src unread.Source, log *slog.Logger) (*unread.Redis, func() error, error) {
	if c.Cache.Driver != "redis" {
		return nil, func() error { return nil }, nil
	}
	rdb := redis.NewClient(&redis.Options{Addr: c.Cache.RedisAddr, DialTimeout: time.Second,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: 1})
	cfg := c.Cache.Unread
	cfg.Logger = log
	u, err := unread.New(rdb, src, cfg)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return u, rdb.Close, nil
}

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log_level %q: %w", s, err)
	}
	return l, nil
}

// Logger builds the process logger.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	level, _ := ParseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Caches are the caches of the message path built from the configuration:
// the relation cache, the recent-message cache (nil when disabled) and the
// unread-counter mirror (nil unless the driver is redis).
type Caches struct {
	Relations *relcache.Cache
	Messages  *msgcache.Cache
	Unread    *unread.Redis
}

// MessageCache returns Messages as a logic.MessageCache (nil when disabled).
func (c Caches) MessageCache() logic.MessageCache {
	if c.Messages == nil {
		return nil
	}
	return c.Messages
}

// UnreadCounter returns Unread as a logic.UnreadCounter (nil when off).
func (c Caches) UnreadCounter() logic.UnreadCounter {
	if c.Unread == nil {
		return nil
	}
	return c.Unread
}

// OpenCaches opens every cache of the configured driver in front of st
// (the one-process server and the distributed processes share it). The
// returned close function releases them all; on error nothing stays open.
func (c *Config) OpenCaches(st store.Store, log *slog.Logger) (Caches, func() error, error) {
	var out Caches
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	rel, closeRel, err := c.OpenCache(st)
	if err != nil {
		return out, nil, fmt.Errorf("cache (%s): %w", c.Cache.Driver, err)
	}
	out.Relations, closers = rel, append(closers, closeRel)
	if msgs, ok := st.(store.Messages); ok {
		mc, closeMC, err := c.OpenMessageCache(msgs)
		if err != nil {
			closeAll()
			return out, nil, fmt.Errorf("message cache (%s): %w", c.Cache.Driver, err)
		}
		out.Messages, closers = mc, append(closers, closeMC)
		u, closeU, err := c.OpenUnread(msgs, log)
		if err != nil {
			closeAll()
			return out, nil, fmt.Errorf("unread counters (%s): %w", c.Cache.Driver, err)
		}
		out.Unread, closers = u, append(closers, closeU)
	}
	return out, closeAll, nil
}

// Package cluster assembles the processes of GoIM's distributed mode:
// `goim comet` (client connections, served to the jobs over RPC), `goim
// logic` (HTTP API, auth, relations, the message path; served to the comets
// over RPC) and `goim job` (bus consumer pushing to the comets). They run the
// same domain code as the one-process server (internal/standalone) on the
// shared backends: MySQL, Redis (session registry and caches), Kafka (the
// bus), with etcd or static address lists for discovery.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/redis/go-redis/v9"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/discovery"
	"github.com/goimdev/goim/internal/session"
)

// Service names in discovery.
const (
	ServiceComet = "comet"
	ServiceLogic = "logic"
)

// Meta keys of a comet's registration.
const (
	MetaTCP = "tcp" // client TCP address
	MetaWS  = "ws"  // client WebSocket address
)

// quietKitex keeps Kitex's own logger (startup banners, "biz error" lines
// for every refused call) to warnings: the processes log with slog.
func quietKitex() { klog.SetLevel(klog.LevelWarn) }

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// discoveryMode returns "etcd" or "static" for cfg.
func discoveryMode(cfg *config.Config) (string, error) {
	switch m := cfg.Cluster.Discovery; m {
	case "":
		if cfg.Cluster.EtcdEndpoints != "" {
			return "etcd", nil
		}
		return "static", nil
	case "etcd", "static":
		if m == "etcd" && cfg.Cluster.EtcdEndpoints == "" {
			return "", errors.New("cluster.etcd_endpoints is required with discovery etcd")
		}
		return m, nil
	default:
		return "", fmt.Errorf("cluster.discovery %q: want etcd or static", m)
	}
}

// disco is a process's discovery: where it registers and what it watches.
type disco struct {
	reg   discovery.Registrar
	watch discovery.Watcher
	close func() error
}

// openDiscovery opens the configured discovery. With static discovery the
// watcher reports the configured lists and registering does nothing; the
// list of the service the process needs (need, "" for none) must be given.
func openDiscovery(ctx context.Context, cfg *config.Config, need string) (*disco, error) {
	mode, err := discoveryMode(cfg)
	if err != nil {
		return nil, err
	}
	if mode == "etcd" {
		e, err := discovery.NewEtcd(ctx, discovery.EtcdConfig{
			Endpoints: splitList(cfg.Cluster.EtcdEndpoints),
			Prefix:    cfg.Cluster.EtcdPrefix,
			TTL:       cfg.Cluster.LeaseTTL,
		})
		if err != nil {
			return nil, fmt.Errorf("etcd: %w", err)
		}
		return &disco{reg: e, watch: e, close: e.Close}, nil
	}
	lists := map[string][]discovery.Instance{}
	for _, a := range splitList(cfg.Cluster.LogicAddrs) {
		lists[ServiceLogic] = append(lists[ServiceLogic], discovery.Instance{Service: ServiceLogic, Name: a, Addr: a})
	}
	for _, pair := range splitList(cfg.Cluster.CometAddrs) {
		name, addr, ok := strings.Cut(pair, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("cluster.comet_addrs: %q is not name=host:port", pair)
		}
		lists[ServiceComet] = append(lists[ServiceComet], discovery.Instance{Service: ServiceComet, Name: name, Addr: addr})
	}
	if need != "" && len(lists[need]) == 0 {
		flag := map[string]string{ServiceLogic: "--logic-addrs", ServiceComet: "--comet-addrs"}[need]
		return nil, fmt.Errorf("no %s instances: give %s (static discovery) or --etcd-endpoints", need, flag)
	}
	st := discovery.NewStatic(lists)
	return &disco{reg: st, watch: st, close: func() error { return nil }}, nil
}

// advertise returns the address to register for a listener bound at bound.
func advertise(configured string, bound net.Addr) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return bound.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// openRedis connects to cache.redis_addr, which the distributed mode needs
// for the session registry (and the caches), and checks it answers.
func openRedis(ctx context.Context, cfg *config.Config) (*redis.Client, error) {
	if cfg.Cache.RedisAddr == "" {
		return nil, errors.New("cache.redis_addr (--redis-addr) is required in the distributed mode: it holds the session registry")
	}
	// A larger pool than go-redis's 10 per CPU: connects and heartbeat
	// batches of many comets arrive at once.
	rdb := redis.NewClient(&redis.Options{Addr: cfg.Cache.RedisAddr, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second, PoolSize: 64, PoolTimeout: 3 * time.Second})
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", cfg.Cache.RedisAddr, err)
	}
	return rdb, nil
}

// openSessions returns the Redis session registry, with a session TTL of
// at least 3 comet heartbeats.
func openSessions(rdb *redis.Client, cfg *config.Config) (session.Registry, error) {
	rc := session.DefaultRedisConfig()
	hb := cfg.Comet.Heartbeat
	rc.SessionTTL = max(rc.SessionTTL, 3*hb)
	return session.NewRedis(rdb, rc)
}

// openBus connects to the Kafka brokers of cfg.
func openBus(ctx context.Context, cfg *config.Config, log *slog.Logger) (bus.Bus, error) {
	kc := cfg.Cluster.Kafka
	if brokers := splitList(cfg.Cluster.KafkaBrokers); len(brokers) > 0 {
		kc.Brokers = brokers
	}
	if len(kc.Brokers) == 0 {
		return nil, errors.New("cluster.kafka_brokers (--kafka-brokers) is required in the distributed mode")
	}
	b, err := bus.NewKafka(ctx, kc, log.With("component", "kafka"))
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return b, nil
}

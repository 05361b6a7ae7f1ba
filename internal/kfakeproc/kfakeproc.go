// Package kfakeproc serves an in-process fake Kafka cluster (franz-go's
// kfake, which speaks the real wire protocol) for local development: the
// CLI exposes it as `goim kafka-dev`, which `make cluster` starts when no
// Kafka is given. It keeps everything in memory: a restart loses all
// topics, messages and committed offsets. Not for production.
package kfakeproc

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Cluster is a running kfake cluster of one broker.
type Cluster struct {
	c *kfake.Cluster
}

// Start serves a one-broker kfake cluster on addr (host:port; port 0 picks
// a free one). Topics are auto-created with partitions partitions (default
// 8 when partitions <= 0); the goim bus creates its topics itself anyway.
// The broker advertises the address it listens on, so clients must reach
// it as addr's host.
func Start(addr string, partitions int) (*Cluster, error) {
	if partitions <= 0 {
		partitions = 8
	}
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kfakeproc: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("kfakeproc: address %q: bad port: %w", addr, err)
	}
	c, err := kfake.NewCluster(
		kfake.Ports(port), // one broker
		// kfake always asks for 127.0.0.1:port; listen on addr instead.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(partitions),
	)
	if err != nil {
		return nil, fmt.Errorf("kfakeproc: start on %s: %w", addr, err)
	}
	return &Cluster{c: c}, nil
}

// Addr returns the broker's listening address (host:port).
func (c *Cluster) Addr() string { return c.c.ListenAddrs()[0] }

// Close stops the cluster. It is idempotent.
func (c *Cluster) Close() { c.c.Close() }

// Run serves a kfake cluster on addr (see Start) until ctx ends.
func Run(ctx context.Context, addr string, partitions int) error {
	c, err := Start(addr, partitions)
	if err != nil {
		return err
	}
	defer c.Close()
	<-ctx.Done()
	return nil
}

// Package embedetcd runs a one-member etcd server inside the process: for
// tests of the distributed mode and for the local cluster (`make cluster`)
// when no etcd is given. It is not meant for production.
package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// startTimeout bounds the wait for the server to be ready.
const startTimeout = 60 * time.Second

// Start runs an etcd server with its data in dir, serving clients on
// clientURL (e.g. "http://127.0.0.1:2379"; empty: a free port of
// 127.0.0.1). Its peer port is a free port of 127.0.0.1. It returns when
// the server is ready, with the client endpoints and a stop function.
func Start(dir, clientURL string) (endpoints []string, stop func(), err error) {
	e, err := start(dir, clientURL)
	if err != nil {
		return nil, nil, err
	}
	for _, l := range e.Clients {
		endpoints = append(endpoints, "http://"+l.Addr().String())
	}
	return endpoints, e.Close, nil
}

func start(dir, clientURL string) (*embed.Etcd, error) {
	if clientURL == "" {
		clientURL = "http://127.0.0.1:0"
	}
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: client URL %q: %w", clientURL, err)
	}
	pu := &url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg := embed.NewConfig()
	cfg.Name = "goim"
	cfg.Dir = dir
	cfg.LogLevel = "fatal" // Close logs "server closed" errors; failures come through Err()
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true // a local or test server: speed over durability
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedetcd: %w", err)
	case <-time.After(startTimeout):
		e.Server.Stop()
		e.Close()
		return nil, errors.New("embedetcd: server not ready in time")
	}
}

// TB is the part of testing.TB that StartT uses (this package is linked
// into the goim binary, which must not import testing).
type TB interface {
	Helper()
	TempDir() string
	Fatal(args ...any)
	Cleanup(func())
}

// StartT runs a server for the test t on a free port, with its data in a
// temporary directory, stopped when the test ends. It returns the client
// endpoints.
func StartT(t TB) []string {
	t.Helper()
	endpoints, stop, err := Start(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return endpoints
}

// RunEmbedded runs a server (see Start) until ctx ends or the server
// fails.
func RunEmbedded(ctx context.Context, dir, clientURL string) error {
	e, err := start(dir, clientURL)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("embedetcd: %w", err)
	}
}

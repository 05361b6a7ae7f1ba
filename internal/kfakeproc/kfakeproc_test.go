package kfakeproc_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/bus/bustest"
	"github.com/goimdev/goim/internal/kfakeproc"
)

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Run serves a cluster the Kafka bus can use until its ctx ends.
func TestRun(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- kfakeproc.Run(ctx, addr, 4) }()

	var k *bus.Kafka
	bustest.WaitFor(t, "kfake to accept connections", func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		var err error
		k, err = bus.NewKafka(cctx, bus.KafkaConfig{Brokers: []string{addr}, Partitions: 4}, nil)
		return err == nil
	})
	defer k.Close()
	var r bustest.Recorder
	topic := bustest.UniqueTopic(t)
	if err := k.Subscribe(t.Context(), topic, "g", r.Handle); err != nil {
		t.Fatal(err)
	}
	bustest.PublishAll(t, k, topic, []string{"a", "b"}, 10)
	bustest.WaitFor(t, "messages", func() bool { return r.Distinct() == 20 })
	bustest.CheckOrder(t, r.Messages(), []string{"a", "b"}, 10)
	k.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(bustest.Timeout):
		t.Fatal("Run did not return after ctx ended")
	}
	bustest.WaitFor(t, "the port to be released", func() bool {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		ln.Close()
		return true
	})
}

func TestStartBadAddr(t *testing.T) {
	if c, err := kfakeproc.Start("nonsense", 1); err == nil {
		c.Close()
		t.Fatal("Start accepted an address without port")
	}
}

func TestStartAddr(t *testing.T) {
	c, err := kfakeproc.Start("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := net.DialTimeout("tcp", c.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", c.Addr(), err)
	}
	conn.Close()
}

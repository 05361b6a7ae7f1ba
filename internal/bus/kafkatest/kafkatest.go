// Package kafkatest gives tests a Kafka cluster: the brokers named by
// GOIM_TEST_KAFKA_BROKERS when it is set, otherwise an in-process kfake
// cluster (github.com/twmb/franz-go/pkg/kfake) on 127.0.0.1 that speaks
// the real wire protocol and lives as long as the test.
package kafkatest

import (
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BrokersEnv names a real Kafka to test against, as a comma separated list
// of host:port.
const BrokersEnv = "GOIM_TEST_KAFKA_BROKERS"

// Options shape a kfake cluster. Zero values take the documented defaults.
type Options struct {
	// Brokers is the number of brokers. Default 1.
	Brokers int
	// Partitions of auto-created topics. Default 3.
	Partitions int
}

// Brokers returns the brokers of GOIM_TEST_KAFKA_BROKERS, or those of a
// new kfake cluster (see NewCluster) when the variable is unset.
func Brokers(t testing.TB, opts Options) []string {
	t.Helper()
	if env := os.Getenv(BrokersEnv); env != "" {
		return strings.Split(env, ",")
	}
	return NewCluster(t, opts).ListenAddrs()
}

// NewCluster starts a kfake cluster on 127.0.0.1 random ports and closes it
// when the test ends. Topics are auto-created on first use.
func NewCluster(t testing.TB, opts Options) *kfake.Cluster {
	t.Helper()
	if opts.Brokers <= 0 {
		opts.Brokers = 1
	}
	if opts.Partitions <= 0 {
		opts.Partitions = 3
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(opts.Brokers),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(opts.Partitions),
	)
	if err != nil {
		t.Fatalf("kafkatest: start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

package cli

import (
	"context"
	"flag"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/goimdev/goim/internal/kfakeproc"
)

// runDevKafka serves an in-memory Kafka (kfake) until SIGINT/SIGTERM.
func runDevKafka(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("dev-kafka", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	addr := fs.String("addr", "127.0.0.1:9092", "listen address")
	partitions := fs.Int("partitions", 8, "partitions of auto-created topics")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := kfakeproc.Start(*addr, *partitions)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(env.Stdout, "kfake serving on %s (in memory: a restart loses everything)\n", c.Addr())
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/standalone"
)

// node is a process a subcommand runs until SIGINT/SIGTERM.
type node interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// serve loads the configuration, builds the node with build, starts it and
// shuts it down gracefully on the first SIGINT/SIGTERM (a second one kills
// the process at once).
func serve[N node](ctx context.Context, env Env, name string, args []string,
	build func(context.Context, config.Config, *slog.Logger) (N, error)) error {
	cfg, err := config.Load(name, args, env.Getenv, env.Stderr)
	if err != nil {
		return err
	}
	log := cfg.Logger(env.Stderr)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	n, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		_ = n.Shutdown(context.Background())
		return err
	}
	<-ctx.Done()
	stop()
	log.Info("shutting down: draining", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

func runStandalone(ctx context.Context, env Env, args []string) error {
	return serve(ctx, env, "standalone", args, standalone.New)
}

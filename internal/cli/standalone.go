package cli

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/standalone"
)

func runStandalone(ctx context.Context, env Env, args []string) error {
	cfg, err := config.Load("standalone", args, env.Getenv, env.Stderr)
	if err != nil {
		return err
	}
	log := cfg.Logger(env.Stderr)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	srv, err := standalone.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	<-ctx.Done()
	stop() // a second signal kills the process at once
	log.Info("shutting down: draining clients", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

package cli

import (
	"context"
	"fmt"

	"github.com/goimdev/goim/internal/config"
)

// runMigrate applies the pending schema migrations of the configured store
// and exits (servers also migrate at start-up; this is for operators who
// migrate before rolling out).
func runMigrate(ctx context.Context, env Env, args []string) error {
	cfg, err := config.Load("migrate", args, env.Getenv, env.Stderr)
	if err != nil {
		return err
	}
	st, err := cfg.OpenStore(ctx)
	if err != nil {
		return fmt.Errorf("store (%s): %w", cfg.Store.Driver, err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	_, err = fmt.Fprintf(env.Stdout, "%s store is at the latest schema\n", cfg.Store.Driver)
	return err
}

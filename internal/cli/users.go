package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/store"
)

// runUsers manages accounts in the embedded store directly (no server
// needed). `goim users seed` creates many accounts at once for benchmarks and
// demos: the password is hashed once and shared by all of them.
func runUsers(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] != "seed" {
		return errors.New("usage: goim users seed --count N [--prefix user] [--password PW] [--data-dir DIR]")
	}
	fs := flag.NewFlagSet("users seed", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	count := fs.Int("count", 0, "number of accounts to create (1..1000000)")
	prefix := fs.String("prefix", "user", "username prefix: accounts are <prefix>-000001, <prefix>-000002, ...")
	password := fs.String("password", "password123", "password of every seeded account (8-128 characters)")
	dataDir := fs.String("data-dir", "", "data directory (default from GOIM_DATA_DIR / config)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *count <= 0 || *count > 1_000_000 {
		return errors.New("--count must be between 1 and 1000000")
	}
	if n := len(*password); n < 8 || n > 128 {
		return errors.New("--password must be 8-128 characters")
	}
	cfg, err := config.Load("users", nil, env.Getenv, env.Stderr)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	st, err := cfg.OpenStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	hasher, err := auth.NewPasswordHasher(auth.DefaultPasswordParams())
	if err != nil {
		return err
	}
	hash, err := hasher.Hash(ctx, *password)
	if err != nil {
		return err
	}
	ids := make([]int64, 0, *count)
	for i := 1; i <= *count; i++ {
		name := fmt.Sprintf("%s-%06d", *prefix, i)
		u := &store.User{Username: name, PasswordHash: hash, Nickname: name}
		id, err := st.CreateUser(ctx, u)
		if errors.Is(err, store.ErrUsernameTaken) {
			existing, lerr := st.UserByUsername(ctx, name)
			if lerr != nil {
				return lerr
			}
			id, err = existing.ID, nil
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		ids = append(ids, id)
	}
	out, err := sonic.Marshal(map[string]any{"user_ids": ids})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(env.Stdout, string(out))
	return err
}

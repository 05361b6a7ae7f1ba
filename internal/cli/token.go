package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/config"
)

// runToken prints a JWT for a user, signed with the configured secret (or the
// one kept in the data directory), for tests, benchmarks and operators.
func runToken(_ context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	user := fs.Int64("user", 0, "user id (required)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	device := fs.String("device", "", "device id to put in the token")
	cfgFile := fs.String("config", env.Getenv("GOIM_CONFIG"), "YAML configuration file")
	dataDir := fs.String("data-dir", "", "data directory (default from config)")
	secret := fs.String("jwt-secret", "", "JWT secret (default from config or the data directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user <= 0 {
		return errors.New("--user ID is required (a positive user id)")
	}
	if *ttl <= 0 {
		return errors.New("--ttl must be positive")
	}
	var cargs []string
	if *cfgFile != "" {
		cargs = append(cargs, "--config", *cfgFile)
	}
	cfg, err := config.Load("token", cargs, env.Getenv, env.Stderr)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *secret != "" {
		cfg.JWTSecret = *secret
	}
	key := []byte(cfg.JWTSecret)
	if len(key) == 0 {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return err
		}
		if key, err = auth.LoadOrCreateSecret(cfg.DataDir); err != nil {
			return err
		}
	}
	iss, err := auth.NewIssuer(key, "goim")
	if err != nil {
		return err
	}
	tok, _, err := iss.Issue(*user, *device, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(env.Stdout, tok)
	return err
}

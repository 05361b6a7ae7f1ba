package cli

import (
	"context"

	"github.com/goimdev/goim/internal/cluster"
)

func runComet(ctx context.Context, env Env, args []string) error {
	return serve(ctx, env, "comet", args, cluster.NewComet)
}

func runLogic(ctx context.Context, env Env, args []string) error {
	return serve(ctx, env, "logic", args, cluster.NewLogic)
}

func runJob(ctx context.Context, env Env, args []string) error {
	return serve(ctx, env, "job", args, cluster.NewJob)
}

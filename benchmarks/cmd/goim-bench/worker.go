package main

import (
	"context"
	"flag"
	"io"

	"github.com/goimdev/goim/benchmarks/loadgen"
)

func runWorker(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.Int("id", 0, "worker number")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return loadgen.ServeMain(ctx, *id)
}

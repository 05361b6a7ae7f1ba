package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"

	"github.com/goimdev/goim/benchmarks/loadgen"
)

// profileEnv names a directory where each worker writes a CPU profile of
// its whole life (worker-<id>.cpu.pprof), to see what the load generator
// itself costs.
const profileEnv = "GOIM_BENCH_WORKER_PROFILE"

func runWorker(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.Int("id", 0, "worker number")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if dir := os.Getenv(profileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.cpu.pprof", *id)))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return loadgen.ServeMain(ctx, *id)
}

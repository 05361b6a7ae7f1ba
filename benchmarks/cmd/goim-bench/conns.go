package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/goimdev/goim/benchmarks/suite"
)

func runConns(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("conns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs, 15000)
	runs := fs.Int("runs", 1, "runs, each against a fresh server (an external server is reused)")
	settle := fs.Duration("settle", 20*time.Second, "idle time after the ramp before measuring (heartbeats flow)")
	samples := fs.Int("samples", 5, "RSS samples at the end of the settle window, one per second")
	room := fs.String("room", "", "room joined at auth (default none)")
	hold := fs.Duration("hold", 0, "after measuring, hold the connections this long (heartbeating) and report those the server dropped (must be 0), e.g. 5m")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := f.validate(); err != nil {
		return err
	}
	res := suite.NewResult("conns", append([]string{"goim-bench", "conns"}, args...))
	f.scenario, f.started = "conns", res.StartedAt
	cfg := suite.ConnsConfig{N: f.n, Transport: f.transport, Rate: f.rate, Settle: *settle, Samples: *samples,
		Room: *room, MaxInFlight: f.maxInFlight, Workers: f.poolSize(), Progress: stderr, Hold: *hold}
	if a := f.cometAddrs(); len(a) > 1 {
		cfg.Addrs = a
	}
	if p, _ := f.pidList(); len(p) > 1 {
		cfg.PIDs = p
	}
	res.Conns = &suite.ConnsResult{Config: cfg}
	var runErr error
	for i := range max(*runs, 1) {
		fmt.Fprintf(stderr, "== conns run %d/%d: %d %s connections\n", i+1, *runs, f.n, f.transport)
		s, err := f.open(ctx, stderr)
		if err != nil {
			runErr = err
			break
		}
		res.Server = s.info
		run, err := suite.RunConns(ctx, cfg, s.target, s.pool)
		if err != nil {
			fmt.Fprintf(stderr, "\nrun %d failed: %v\nserver log tail:\n%s\n", i+1, err, s.serverLogTail())
		}
		run.Stop = s.close(stderr)
		res.Conns.Runs = append(res.Conns.Runs, run)
		for _, n := range run.Check() {
			res.Notef("run %d: %s", i+1, n)
		}
		if err != nil {
			runErr = err
			res.Notef("run %d failed: %v", i+1, err)
			break
		}
		if ctx.Err() != nil {
			runErr = ctx.Err()
			break
		}
	}
	res.Conns.Summarize()
	if len(res.Conns.Runs) == 0 {
		return runErr
	}
	if err := f.finish(res, stdout, stderr); err != nil {
		return errors.Join(runErr, err)
	}
	if runErr != nil {
		return runErr
	}
	if len(res.Notes) > 0 {
		fmt.Fprintf(stderr, "%d anomalies noted (see NOTE lines)\n", len(res.Notes))
	}
	return nil
}

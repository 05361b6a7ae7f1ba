package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/goimdev/goim/benchmarks/suite"
)

func runGroup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("group", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs, 0)
	var m msgFlags
	m.register(fs, 2)
	members := fs.Int("members", 500, "group members, all online (one connection each); the first is the owner")
	senders := fs.Int("senders", 8, "members that send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *members < 2 || *senders <= 0 {
		return errors.New("-members must be at least 2 and -senders positive")
	}
	res := suite.NewResult("group", append([]string{"goim-bench", "group"}, args...))
	f.scenario, f.started = "group", res.StartedAt
	cfg := suite.GroupConfig{Members: *members, Senders: *senders, Transport: f.transport, Rate: m.rate, InFlight: m.inFlight,
		Duration: m.duration, Drain: m.drain, Quiet: m.quiet, Progress: stderr}
	fmt.Fprintf(stderr, "== group: %d members, %d senders over %s, rate %g/s (0: closed loop, %d in flight), %v\n", *members, *senders, f.transport, m.rate, m.inFlight, m.duration)
	s, cleanup, err := f.msgSession(ctx, &m, *members, *members, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	res.Server = s.info
	group, runErr := suite.RunGroup(ctx, cfg, s.target)
	if runErr != nil {
		fmt.Fprintf(stderr, "\ngroup failed: %v\nserver log tail:\n%s\n", runErr, s.serverLogTail())
		res.Notef("failed: %v", runErr)
	}
	group.Stop = s.close(stderr)
	res.Group = group
	res.Notes = append(res.Notes, group.Check()...)
	if err := f.finish(res, stdout, stderr); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

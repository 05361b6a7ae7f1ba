package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"

	"github.com/goimdev/goim/benchmarks/suite"
)

func runChat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs, 0)
	var m msgFlags
	m.register(fs, 4)
	pairs := fs.Int("pairs", 500, "one-to-one conversations; each pair is two users with one connection each, the first sends to the second")
	perf := fs.Bool("perf", false, "sample the server's CPU with perf during the sending window and keep the top symbols in the result")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pairs <= 0 {
		return errors.New("-pairs must be positive")
	}
	res := suite.NewResult("chat", append([]string{"goim-bench", "chat"}, args...))
	f.scenario, f.started = "chat", res.StartedAt
	cfg := suite.ChatConfig{Pairs: *pairs, Transport: f.transport, Rate: m.rate, InFlight: m.inFlight, Duration: m.duration,
		Drain: m.drain, Quiet: m.quiet, Progress: stderr}
	fmt.Fprintf(stderr, "== chat: %d pairs over %s, rate %g/s (0: closed loop, %d in flight), %v\n", *pairs, f.transport, m.rate, m.inFlight, m.duration)
	s, cleanup, err := f.msgSession(ctx, &m, 2**pairs, 0, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	res.Server = s.info
	var profile string
	var wg sync.WaitGroup
	if *perf {
		wg.Add(1)
		go func() {
			defer wg.Done()
			profile = perfProfile(ctx, s.target.PID, m.duration, 25)
		}()
	}
	chat, runErr := suite.RunChat(ctx, cfg, s.target)
	wg.Wait()
	chat.Profile = profile
	if runErr != nil {
		fmt.Fprintf(stderr, "\nchat failed: %v\nserver log tail:\n%s\n", runErr, s.serverLogTail())
		res.Notef("failed: %v", runErr)
	}
	chat.Stop = s.close(stderr)
	res.Chat = chat
	res.Notes = append(res.Notes, chat.Check()...)
	if err := f.finish(res, stdout, stderr); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

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

func runHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs, 0)
	var m msgFlags
	m.register(fs, 8)
	convs := fs.Int("conversations", 100, "one-to-one conversations to seed")
	messages := fs.Int("messages", 1000, "messages per conversation (sent through Op 4)")
	hot := fs.Int("hot", 0, "hot conversations (0: a tenth)")
	hotShare := fs.Float64("hot-share", 0.9, "share of the reads that fetch the latest page of a hot conversation")
	readers := fs.Int("readers", 32, "concurrent readers")
	pageSize := fs.Int("limit", 50, "page size (limit=)")
	readFor := fs.Duration("read-duration", 10*time.Second, "reading time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *convs <= 0 || *messages <= 0 || *readers <= 0 {
		return errors.New("-conversations, -messages and -readers must be positive")
	}
	res := suite.NewResult("history", append([]string{"goim-bench", "history"}, args...))
	f.scenario, f.started = "history", res.StartedAt
	cfg := suite.HistoryConfig{Conversations: *convs, Messages: *messages, Hot: *hot, HotShare: *hotShare, Readers: *readers,
		PageSize: *pageSize, Duration: *readFor, Transport: f.transport, Progress: stderr}
	fmt.Fprintf(stderr, "== history: %d conversations x %d messages, %d readers for %v\n", *convs, *messages, *readers, *readFor)
	s, cleanup, err := f.msgSession(ctx, &m, 2**convs, 0, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	res.Server = s.info
	hist, runErr := suite.RunHistory(ctx, cfg, s.target)
	if runErr != nil {
		fmt.Fprintf(stderr, "\nhistory failed: %v\nserver log tail:\n%s\n", runErr, s.serverLogTail())
		res.Notef("failed: %v", runErr)
	}
	hist.Stop = s.close(stderr)
	res.History = hist
	res.Notes = append(res.Notes, hist.Check()...)
	if err := f.finish(res, stdout, stderr); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

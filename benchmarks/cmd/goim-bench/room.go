package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/goimdev/goim/benchmarks/suite"
)

func runRoom(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("room", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs, 15000)
	rates := fs.String("rates", "10,100,1000", "push rates (pushes/s), comma separated, run in order")
	duration := fs.Duration("duration", 10*time.Second, "push time per rate")
	payload := fs.Int("payload", 64, "push body bytes (>= 16: send time and sequence number)")
	concurrency := fs.Int("concurrency", 16, "push requests in flight")
	drain := fs.Duration("drain", 60*time.Second, "longest wait for deliveries after a rate's last push")
	quiet := fs.Duration("quiet", 3*time.Second, "end the wait when nothing arrived for this long")
	op := fs.Int("op", 1000, "push operation (>= 1000)")
	roomType := fs.String("room-type", "live", "push API type= (the connections join TYPE://ROOM)")
	roomName := fs.String("room", "bench", "push API room=")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := f.validate(); err != nil {
		return err
	}
	var rs []float64
	for _, s := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("-rates: bad rate %q", s)
		}
		rs = append(rs, r)
	}
	if *op < 1000 {
		return errors.New("-op must be >= 1000")
	}
	res := suite.NewResult("room", append([]string{"goim-bench", "room"}, args...))
	f.scenario, f.started = "room", res.StartedAt
	cfg := suite.RoomConfig{N: f.n, Transport: f.transport, ConnectRate: f.rate, Rates: rs, Duration: *duration,
		PayloadSize: *payload, Concurrency: *concurrency, Drain: *drain, Quiet: *quiet, Op: int32(*op),
		RoomType: *roomType, Room: *roomName, MaxInFlight: f.maxInFlight, Workers: f.poolSize(), Progress: stderr}
	if a := f.cometAddrs(); len(a) > 1 {
		cfg.Addrs = a
	}
	if p, _ := f.pidList(); len(p) > 1 {
		cfg.PIDs = p
	}
	fmt.Fprintf(stderr, "== room: %d %s connections, rates %v\n", f.n, f.transport, rs)
	s, err := f.open(ctx, stderr)
	if err != nil {
		return err
	}
	res.Server = s.info
	room, runErr := suite.RunRoom(ctx, cfg, s.target, s.pool)
	if runErr != nil {
		fmt.Fprintf(stderr, "\nroom failed: %v\nserver log tail:\n%s\n", runErr, s.serverLogTail())
		res.Notef("failed: %v", runErr)
	}
	room.Stop = s.close(stderr)
	res.Room = room
	res.Notes = append(res.Notes, room.Check()...)
	if err := f.finish(res, stdout, stderr); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

// Command goim-bench is GoIM's multi-process load generator. The driver
// (this command) starts or attaches to a GoIM server, re-executes itself as
// worker processes (`goim-bench worker`) that hold the client connections,
// runs a scenario, prints a table and writes a JSON result to
// benchmarks/results/. `goim-bench report` renders the results into
// benchmarks/README.md.
//
//	goim-bench conns -n 15000 [-runs 3] [-transport tcp|ws] [-hold 5m]
//	goim-bench room  -n 15000 -rates 10,100,1000 -duration 10s
//	goim-bench chat  -pairs 500 [-msg-rate 25000 | -in-flight 4] -duration 15s
//	goim-bench group -members 500 -senders 8 -duration 15s
//	goim-bench history -conversations 100 -messages 1000 -readers 32
//	goim-bench report [-charts DIR]
//
// Against a running cluster every scenario takes -http, -users, -secret and
// -addrs h:p,h:p (TCP) or -ws-addrs (WebSocket): the client connections are
// spread over the comets round robin; -pids sums RSS and CPU over several
// server processes. -rate paces the connects; a progress line goes to
// stderr once a second; SIGINT or SIGTERM stops a run cleanly and still
// prints and writes its partial result, marked interrupted.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"conns":   {"RSS, goroutines and idle CPU of the server per idle authenticated connection", runConns},
	"room":    {"room broadcast: deliveries/s, loss and push-to-receive latency at several push rates", runRoom},
	"chat":    {"one-to-one messages: send -> SendAck -> receiver's event; msgs/s, loss, latency (open or closed loop)", runChat},
	"group":   {"messages to one group with every member online: messages/s, deliveries/s, latency", runGroup},
	"history": {"history page reads over hot and cold conversations: reads/s and latency", runHistory},
	"report":  {"render benchmarks/results/*.json into the tables of benchmarks/README.md", runReport},
	"worker":  {"(internal) a worker process serving the driver on stdin/stdout", runWorker},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "goim-bench: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "goim-bench %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: goim-bench <command> [flags]   (goim-bench <command> -h lists its flags)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-7s %s\n", n, commands[n].summary)
	}
}

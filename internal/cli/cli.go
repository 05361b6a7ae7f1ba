// Package cli implements the goim command line: one file per subcommand,
// called by the thin main in cmd/goim.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
)

// Env is what a subcommand may use of the outside world.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

type command struct {
	summary string
	run     func(ctx context.Context, env Env, args []string) error
}

var commands = map[string]command{
	"standalone": {"run comet, logic and job in one process on the embedded backends", runStandalone},
	"token":      {"print a JWT for a user: goim token --user ID [--ttl 1h]", runToken},
	"version":    {"print the version", runVersion},
	"migrate":    {"apply the store's schema migrations (sqlite or mysql) and exit", runMigrate},
	"users":      {"manage accounts in the embedded store: goim users seed --count N", runUsers},
	"comet":      {"run a comet node: client connections (distributed mode)", runComet},
	"logic":      {"run a logic node: HTTP API, auth, relations, messages (distributed mode)", runLogic},
	"job":        {"run a job node: pushes from Kafka to the comets (distributed mode)", runJob},
	"cluster":    {"start a local cluster of real processes (2 comets, 1 logic, 2 jobs; make cluster)", runCluster},
	"dev-kafka":  {"serve an in-memory Kafka (kfake) for development: goim dev-kafka --addr 127.0.0.1:9092", runDevKafka},
}

// Run runs the subcommand named by args[0] and returns the process exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "goim: unknown command %q\n\n", args[0])
		usage(env.Stderr)
		return 2
	}
	if err := cmd.run(ctx, env, args[1:]); err != nil {
		fmt.Fprintf(env.Stderr, "goim %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: goim <command> [flags]   (goim <command> -h lists a command's flags)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set with a GOIM_* environment variable (e.g. --http-addr: GOIM_HTTP_ADDR) or in the --config YAML file.")
}

// Command goim is the GoIM server: `goim standalone` runs everything in one
// process; `goim help` lists the other subcommands.
package main

import (
	"context"
	"os"

	"github.com/goimdev/goim/internal/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
}

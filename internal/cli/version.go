package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time: -ldflags "-X github.com/goimdev/goim/internal/cli.version=v1.2.3".
var version = "dev"

// Version returns the build's version string.
func Version() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}

func runVersion(_ context.Context, env Env, _ []string) error {
	_, err := fmt.Fprintf(env.Stdout, "goim %s %s %s/%s\n", Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

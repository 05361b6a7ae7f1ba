package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/goimdev/goim/benchmarks/suite"
)

func runReport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("results", "benchmarks/results", "directory of the result files")
	readme := fs.String("readme", "benchmarks/README.md", "file whose results section is rewritten")
	print := fs.Bool("stdout", false, "print the tables instead of rewriting the README")
	if err := fs.Parse(args); err != nil {
		return err
	}
	results, err := suite.LoadResults(*dir)
	if err != nil {
		return err
	}
	md := suite.RenderMarkdown(results)
	if *print {
		_, err := io.WriteString(stdout, md)
		return err
	}
	if err := suite.UpdateReadme(*readme, md); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d results rendered\n", *readme, len(results))
	return nil
}

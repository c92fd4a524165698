package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"bulwark/internal/app"
)

const checkUsage = `Usage: bulwark check [--config FILE] [-q] [-- APP COMMAND ...]

Validates the configuration and builds everything 'run' builds (certificates
loaded, transport and spool directory checked) short of binding sockets. Prints
the effective configuration with every default and profile value filled in and
where each came from, or every problem found (exit code 1).
`

func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage); fs.PrintDefaults() }
	path := configFlag(fs)
	quiet := fs.Bool("q", false, "print only problems, not the effective configuration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(findConfig(*path), fs.Args())
	if err != nil {
		printConfigErrors(stderr, err)
		return errReported
	}
	warnings, err := app.Check(cfg)
	if err != nil {
		for _, w := range append(cfg.Warnings, warnings...) {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		problems := []error{err}
		if m, ok := err.(interface{ Unwrap() []error }); ok {
			problems = m.Unwrap()
		}
		for _, p := range problems {
			fmt.Fprintf(stderr, "  %s\n", strings.ReplaceAll(p.Error(), "\n", "\n  "))
		}
		noun := "problems"
		if len(problems) == 1 {
			noun = "problem"
		}
		fmt.Fprintf(stderr, "bulwark: the configuration is valid but cannot be served: %d %s\n", len(problems), noun)
		return errReported
	}
	if !*quiet {
		fmt.Fprint(stdout, cfg.Render())
	}
	for _, w := range append(cfg.Warnings, warnings...) {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintln(stdout, "# configuration ok")
	return nil
}

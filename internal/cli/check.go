package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"bulwark/internal/app"
	"bulwark/internal/config"
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
		if len(config.Errors(err)) > 0 { // the file parsed: its files can be looked at too
			if warnings, ferr := app.CheckFiles(cfg); ferr != nil || len(warnings) > 0 {
				printCheckProblems(stderr, warnings, ferr, "names files with")
			}
		}
		return errReported
	}
	warnings, err := app.Check(cfg)
	if err != nil {
		printCheckProblems(stderr, append(cfg.Warnings, warnings...), err, "is valid but cannot be served:")
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

// printCheckProblems prints warnings, then every problem joined in err,
// one a line, then a count ("the configuration <what> N problems").
func printCheckProblems(w io.Writer, warnings []string, err error, what string) {
	for _, warn := range warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if err == nil {
		return
	}
	problems := []error{err}
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		problems = m.Unwrap()
	}
	for _, p := range problems {
		fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(p.Error(), "\n", "\n  "))
	}
	noun := "problems"
	if len(problems) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(w, "bulwark: the configuration %s %d %s\n", what, len(problems), noun)
}

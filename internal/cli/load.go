package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"bulwark/internal/config"
)

// configFlag registers --config on fs; its default comes from BULWARK_CONFIG.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", os.Getenv("BULWARK_CONFIG"), "configuration `file` (TOML); default: none, or $BULWARK_CONFIG")
}

// loadConfig loads the configuration the way run, check and reload all do:
// the file, then BULWARK_* environment variables, then the profile. An app
// command given after "--" replaces [app] command.
func loadConfig(path string, appCmd []string) (*config.Config, error) {
	cfg, err := config.Load(config.LoadOptions{Path: path, Environ: os.Environ()})
	if err != nil {
		return cfg, err
	}
	if len(appCmd) > 0 {
		cfg.App.Command = appCmd
		cfg.Sources["app.command"] = "command line"
		if err := cfg.Validate(); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// printConfigErrors writes every configuration problem, one per line.
func printConfigErrors(w io.Writer, err error) {
	errs := config.Errors(err)
	if len(errs) == 0 {
		fmt.Fprintf(w, "bulwark: %v\n", err)
		return
	}
	for _, e := range errs {
		fmt.Fprintf(w, "  %v\n", e)
	}
	noun := "problems"
	if len(errs) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(w, "bulwark: the configuration has %d %s\n", len(errs), noun)
}

// errReported is an error already printed in full.
var errReported = errors.New("see above")

// newLogger builds the process logger from [log]. Its level is the
// returned LevelVar, which a reload sets.
func newLogger(cfg *config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(cfg.Log.SlogLevel())
	o := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.Log.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, o)), level
	}
	return slog.New(slog.NewTextHandler(w, o)), level
}

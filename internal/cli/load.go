package cli

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"bulwark/internal/config"
	"bulwark/internal/observe"
	"bulwark/internal/tlsconf"
)

// defaultConfigFile is the file used, when it exists, with neither
// --config nor $BULWARK_CONFIG: nginx's habit of one well-known name.
const defaultConfigFile = "bulwark.toml"

// configFlagUsage is the help of --config, the same for every command.
const configFlagUsage = "configuration `file` (TOML); default: $BULWARK_CONFIG, else ./" + defaultConfigFile + " if present, else none"

// configFlag registers --config on fs. Its value goes through findConfig.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", configFlagUsage)
}

// findConfig returns the configuration file to use: the --config value,
// else $BULWARK_CONFIG, else ./bulwark.toml when it exists; "" means none
// (defaults, environment and profile only).
func findConfig(flagValue string) string {
	return findConfigIn(flagValue, os.Getenv("BULWARK_CONFIG"), ".")
}

func findConfigIn(flagValue, envValue, dir string) string {
	switch {
	case flagValue != "":
		return flagValue
	case envValue != "":
		return envValue
	}
	p := filepath.Join(dir, defaultConfigFile)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		if abs, err := filepath.Abs(p); err == nil {
			return abs // the log and reloads name it, whatever the cwd later
		}
		return p
	}
	return ""
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

// useGeneratedToken gives a config with an admin server but no
// admin.token the token generated in the state directory, creating it on
// first use, so that on a shared host another local user cannot restart
// the app or reload through the loopback admin port. It returns the
// token file's path. When the token cannot be stored (no home, a read-only
// state directory) it uses fallback, a token kept in memory only, and
// returns the error: the admin actions are then locked rather than open,
// and Bulwark still starts.
func useGeneratedToken(cfg *config.Config, fallback string) (string, error) {
	if cfg.Admin.Listen == "" || cfg.Admin.Token != "" {
		return "", nil
	}
	cfg.Sources["admin.token"] = config.SourceGenerated
	tok, path, err := observe.EnsureToken(tlsconf.StateDir(cfg.TLS.CertDir))
	if err != nil {
		cfg.Admin.Token = fallback
		return "", err
	}
	cfg.Admin.Token = tok
	return path, nil
}

// memoryToken returns a random token for useGeneratedToken's fallback.
func memoryToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail on Linux
	return base64.RawURLEncoding.EncodeToString(b)
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

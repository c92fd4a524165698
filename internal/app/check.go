package app

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"bulwark/internal/acme"
	"bulwark/internal/config"
	"bulwark/internal/tlsconf"
)

// This file holds what check looks at beyond building the pieces: the
// problems run would meet only later (the app's program, its directory,
// the address it listens on), named by their config key.

// checkApp reports what would keep the app from starting or from being
// reached: a program not found, a missing directory, a command that
// listens elsewhere than upstream.address.
func checkApp(cfg *config.Config) []error {
	if len(cfg.App.Command) == 0 {
		return nil
	}
	var errs []error
	dir := cfg.App.Dir
	if dir != "" {
		fi, err := os.Stat(dir)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("app.dir: %q: %w", dir, pathCause(err)))
		case !fi.IsDir():
			errs = append(errs, fmt.Errorf("app.dir: %q is not a directory", dir))
		}
	}
	if err := checkProgram(cfg.App.Command[0], dir); err != nil {
		errs = append(errs, err)
	}
	if len(cfg.Upstream.Address) > 0 {
		if err := checkListenArgs(cfg.App.Command, cfg.Upstream.Address[0]); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// CheckFiles looks only at the files a config names, the certificates and
// keys, the ACME CA root, and the app's program and directory, so that check can list their
// problems next to those of a config that does not validate (Check needs
// a valid one). Problems are named by their key.
func CheckFiles(cfg *config.Config) (warnings []string, err error) {
	errs := checkApp(cfg)
	warnings = keyModeWarnings(cfg)
	var pairs []tlsconf.Pair
	for _, p := range cfg.TLS.Pairs() {
		if p.Cert != "" && p.Key != "" {
			pairs = append(pairs, tlsconf.Pair{CertFile: p.Cert, KeyFile: p.Key})
		}
	}
	if len(pairs) > 0 {
		if _, err := tlsconf.New(tlsconf.Options{Pairs: pairs}); err != nil {
			errs = append(errs, keyedErrors(cfg, err)...)
		}
	}
	if root := cfg.Acme.CARoot; root != "" {
		if err := acme.CheckCARoot(root); err != nil {
			errs = append(errs, fmt.Errorf("acme.ca_root: %w", err))
		}
	}
	return warnings, errors.Join(errs...)
}

// checkProgram checks that prog can be started as the supervisor starts it:
// a name without a slash is looked up on Bulwark's PATH; a relative path is
// taken from the app's directory, which the app is started in.
func checkProgram(prog, dir string) error {
	if !strings.Contains(prog, "/") {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("app.command: %q is not found on PATH (%s): install it, or give its full path, "+
				"such as the virtualenv's \"/srv/app/.venv/bin/%s\"", prog, os.Getenv("PATH"), prog)
		}
		return nil
	}
	p := prog
	if !filepath.IsAbs(p) && dir != "" {
		p = filepath.Join(dir, p)
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		where := ""
		if p != prog {
			where = fmt.Sprintf(" (relative to app.dir: %s)", p)
		}
		return fmt.Errorf("app.command: %q%s: %w", prog, where, pathCause(err))
	case fi.IsDir():
		return fmt.Errorf("app.command: %q is a directory, not a program", prog)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("app.command: %q is not executable (mode %04o): chmod +x it", prog, fi.Mode().Perm())
	}
	return nil
}

// checkListenArgs compares where the command tells the app server to listen
// (--port, --bind/-b, --uds) with upstream.address. A command with {port}
// or {socket} lets Bulwark choose and cannot disagree.
func checkListenArgs(command []string, upstream string) error {
	var args []string
	for _, a := range command {
		if strings.Contains(a, "{port}") || strings.Contains(a, "{socket}") {
			return nil
		}
		args = append(args, strings.Fields(a)...) // also inside "sh -c '…'"
	}
	port, sock, flag := "", "", ""
	server := false
	for i, a := range args {
		if defaultPortServer(a) {
			server = true
		}
		name, val, hasVal := strings.Cut(a, "=")
		if !hasVal && i+1 < len(args) {
			val = args[i+1]
		}
		switch name {
		case "--port":
			port, flag = val, name+" "+val
		case "--uds":
			sock, flag = val, name+" "+val
		case "--bind", "-b":
			flag = name + " " + val
			if p, ok := strings.CutPrefix(val, "unix:"); ok {
				sock = p
			} else if _, pt, err := net.SplitHostPort(val); err == nil {
				port = pt
			}
		}
	}
	if port == "" && sock == "" {
		if !server {
			return nil // an unknown server: nothing to compare
		}
		port, flag = "8000", "no --port: the server's default"
	}
	upSock, isUnix := strings.CutPrefix(upstream, "unix:")
	_, upPort, _ := net.SplitHostPort(upstream)
	switch {
	case sock != "" && (!isUnix || upSock != sock):
		return fmt.Errorf("app.command: the app listens on unix socket %s (%s) but upstream.address is %q: requests would not reach it; "+
			"make them agree, or write \"--uds {socket}\" and Bulwark picks a fresh socket for every instance (which also allows zero-downtime restarts)",
			sock, flag, upstream)
	case sock == "" && (isUnix || upPort != port):
		if _, err := strconv.Atoi(port); err != nil {
			return nil // a shell variable or the like: cannot tell
		}
		return fmt.Errorf("app.command: the app listens on port %s (%s) but upstream.address is %q: requests would not reach it; "+
			"make them agree, or write \"--port {port}\" and Bulwark picks a free port for every instance (which also allows zero-downtime restarts)",
			port, flag, upstream)
	}
	return nil
}

// defaultPortServer reports whether arg names an app server that listens
// on port 8000 when its command names none.
func defaultPortServer(arg string) bool {
	switch filepath.Base(arg) {
	case "uvicorn", "gunicorn", "hypercorn", "granian":
		return true
	}
	return false
}

// pathCause drops the operation and path an *fs.PathError repeats.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// keyModeWarnings warns about every configured key file that its group or
// others can read.
func keyModeWarnings(cfg *config.Config) []string {
	var out []string
	for _, p := range cfg.TLS.Pairs() {
		if w := tlsconf.KeyModeWarning(p.Key); w != "" {
			out = append(out, tlsKey(cfg, "key", p.Key)+": "+w)
		}
		if w := tlsconf.KeyModeWarning(p.Cert); w != "" { // swapped files
			out = append(out, tlsKey(cfg, "certificate", p.Cert)+": "+w)
		}
	}
	return out
}

// keyedErrors turns New's errors into one problem each, a TLS file problem
// named by its config key ("tls.key: key file …: cannot open").
func keyedErrors(cfg *config.Config, err error) []error {
	var top []error
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		top = m.Unwrap()
	} else {
		top = []error{err}
	}
	var out []error
	for _, e := range top {
		var fe *tlsconf.FileError
		if !errors.As(e, &fe) {
			out = append(out, e)
			continue
		}
		for _, leaf := range leaves(e) {
			if errors.As(leaf, &fe) {
				out = append(out, fmt.Errorf("%s: %w", tlsKey(cfg, fe.Kind, fe.Path), fe))
			} else {
				out = append(out, fmt.Errorf("tls: %w", leaf))
			}
		}
	}
	return out
}

// leaves flattens the first joined error in err's chain; an error with
// none is its own leaf.
func leaves(err error) []error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if m, ok := e.(interface{ Unwrap() []error }); ok {
			var out []error
			for _, c := range m.Unwrap() {
				out = append(out, leaves(c)...)
			}
			return out
		}
	}
	return []error{err}
}

// tlsKey names the config key that set a TLS file.
func tlsKey(cfg *config.Config, kind, path string) string {
	t := cfg.TLS
	switch {
	case kind == "ticket key":
		return "tls.ticket_key_file"
	case kind == "certificate" && path == t.Cert:
		return "tls.cert"
	case kind == "key" && path == t.Key:
		return "tls.key"
	}
	for i, p := range t.Certificates {
		if kind == "certificate" && path == p.Cert {
			return fmt.Sprintf("tls.certificates[%d].cert", i)
		}
		if kind == "key" && path == p.Key {
			return fmt.Sprintf("tls.certificates[%d].key", i)
		}
	}
	return "tls"
}

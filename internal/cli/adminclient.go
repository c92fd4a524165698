package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"bulwark/internal/config"
	"bulwark/internal/observe"
	"bulwark/internal/supervise"
	"bulwark/internal/tlsconf"
)

// defaultAdminAddr is the admin address when neither --admin nor the
// config says one; it is the default of [admin] listen.
const defaultAdminAddr = "127.0.0.1:9090"

// adminTimeout bounds one status call to the admin API.
const adminTimeout = 5 * time.Second

// adminFlags holds the flags shared by the commands that talk to a running
// Bulwark's admin server.
type adminFlags struct {
	config string
	addr   string
	token  string
}

// register adds --config, --admin and --token to fs.
func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.config, "config", "", configFlagUsage+"; [admin] listen and token are read from it")
	fs.StringVar(&a.addr, "admin", "", "admin server `address`; default: [admin] listen of the config, else "+defaultAdminAddr)
	fs.StringVar(&a.token, "token", "", "admin `token`; default: $BULWARK_ADMIN_TOKEN, else [admin] token of the config, "+
		"else the token Bulwark generated in its state directory")
}

// client returns an admin client. As "nginx -s reload" finds nginx through
// its config, the address and token come from the flags, else the
// environment, else the configuration file (findConfig), else the token
// Bulwark generated in its state directory.
func (a *adminFlags) client() (*adminClient, error) {
	addr, tok, tokFrom := a.addr, a.token, "--token"
	if tok == "" {
		tok, tokFrom = os.Getenv("BULWARK_ADMIN_TOKEN"), "$BULWARK_ADMIN_TOKEN"
	}
	if addr == "" || tok == "" {
		path := findConfig(a.config)
		cfg, err := config.Load(config.LoadOptions{Path: path, Environ: os.Environ()})
		if err != nil && (cfg == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)) {
			return nil, fmt.Errorf("%w; pass --admin and --token instead", err)
		}
		// Other problems in the file are the server's to report: a reload
		// of a broken file is refused there, with every problem listed.
		if addr == "" {
			addr = cfg.Admin.Listen
			if addr == "" {
				return nil, fmt.Errorf("the admin server is off in %s ([admin] listen = \"\"); pass --admin", describeFile(path))
			}
			addr = dialAddr(addr)
		}
		if tok == "" && cfg.Admin.Token != "" {
			tok, tokFrom = cfg.Admin.Token, "[admin] token of "+describeFile(path)
		}
		if tok == "" {
			if t, p, err := observe.ReadToken(tlsconf.StateDir(cfg.TLS.CertDir)); err == nil {
				tok, tokFrom = t, p
			}
		}
	}
	addr = strings.TrimSuffix(addr, "/")
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	if tok == "" {
		tokFrom = ""
	}
	explicit := tokFrom == "--token" || tokFrom == "$BULWARK_ADMIN_TOKEN"
	return &adminClient{addr: addr, base: base, token: tok, tokenFrom: tokFrom, explicit: explicit,
		hc: &http.Client{Timeout: adminTimeout}}, nil
}

// describeFile names a config file for messages.
func describeFile(path string) string {
	if path == "" {
		return "the default configuration (no --config, $BULWARK_CONFIG or ./" + defaultConfigFile + ")"
	}
	return path
}

// dialAddr turns a listen address into one to connect to: a wildcard or
// empty host is reached on loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// adminClient calls the admin API of a running Bulwark.
type adminClient struct {
	addr      string // as the user gave it, for messages
	base      string // URL prefix
	token     string
	tokenFrom string // where the token came from, for messages
	explicit  bool   // the token came from --token or the environment: keep it
	hc        *http.Client
}

// do sends one request and returns the body of a 2xx answer; any other
// outcome is an error that says what to do about it.
func (c *adminClient) do(ctx context.Context, method, path string) ([]byte, error) {
	body, tokenFile, err := c.do1(ctx, method, path)
	if tokenFile == "" || tokenFile == c.tokenFrom || c.explicit {
		return body, err
	}
	// The server generated its token in tokenFile: as the same user or
	// root, read it there and ask again, but only from a file of the user
	// whose process listens on the admin address. Otherwise another local
	// user listening there while Bulwark is down could name root's token
	// file and collect the token from a `sudo bulwark reload`.
	if err := tokenFileOwnedByListener(c.addr, tokenFile); err != nil {
		return nil, fmt.Errorf("the admin server at %s names %s as its token file, which is not trusted: %w; pass --token", c.addr, tokenFile, err)
	}
	tok, _, rerr := observe.ReadToken(filepath.Dir(tokenFile))
	if rerr != nil {
		return nil, fmt.Errorf("the admin server at %s needs its token, kept in %s, which this user cannot read (%v): "+
			"run this as the user bulwark runs as, or root, or pass --token", c.addr, tokenFile, errors.Unwrap(rerr))
	}
	c.token, c.tokenFrom = tok, tokenFile
	body, _, err = c.do1(ctx, method, path)
	return body, err
}

// do1 sends one request; on a 401 it also returns the file the server
// says its generated token is kept in, if any.
func (c *adminClient) do1(ctx context.Context, method, path string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, "", fmt.Errorf("admin address %q: %w", c.addr, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("stopped waiting for the admin server at %s: %w", c.addr, ctx.Err())
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, "", fmt.Errorf("no bulwark admin server at %s: connection refused — is bulwark running? (see [admin] listen)", c.addr)
		}
		return nil, "", fmt.Errorf("no bulwark admin server at %s: %w", c.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, "", fmt.Errorf("reading the answer of %s: %w", c.addr, err)
	}
	if f := resp.Header.Get(observe.TokenFileHeader); resp.StatusCode == http.StatusUnauthorized && f != "" && f != c.tokenFrom && !c.explicit {
		return nil, f, errors.New("unauthorized")
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && c.token == "":
		return nil, "", fmt.Errorf("the admin server at %s needs a token: pass --config (its [admin] token), --token or "+
			"$BULWARK_ADMIN_TOKEN; with no [admin] token, run this as the user Bulwark runs as, which can read the token "+
			"it generated (%s in its state directory)", c.addr, observe.TokenFile)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, "", fmt.Errorf("the admin server at %s refused the token from %s (401): check it against [admin] token", c.addr, c.tokenFrom)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, "", fmt.Errorf("the admin server at %s answered %d: %s", c.addr, resp.StatusCode, errorBody(body))
	}
	return body, "", nil
}

// errorBody turns the body of a failed answer into text for the user: the
// "error" field of Bulwark's JSON and then every other field that says
// more (such as the app's last stderr lines), else the body as it is.
func errorBody(body []byte) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return strings.TrimSpace(string(body))
	}
	var b strings.Builder
	var msg string
	if json.Unmarshal(fields["error"], &msg) == nil {
		b.WriteString(msg)
	}
	keys := slices.Sorted(maps.Keys(fields))
	for _, k := range keys {
		switch k {
		case "error", "status", "reason", "by", "ok":
			continue
		}
		var s string
		var lines []string
		switch {
		case json.Unmarshal(fields[k], &s) == nil:
			lines = strings.Split(strings.TrimRight(s, "\n"), "\n")
		case json.Unmarshal(fields[k], &lines) == nil:
		default:
			lines = []string{string(fields[k])}
		}
		if len(lines) == 0 || (len(lines) == 1 && lines[0] == "") {
			continue
		}
		fmt.Fprintf(&b, "\n%s:", k)
		for _, l := range lines {
			b.WriteString("\n  " + l)
		}
	}
	if b.Len() == 0 {
		return strings.TrimSpace(string(body))
	}
	return b.String()
}

// status fetches /status, with the history when asked; it returns the raw
// JSON too, for --json.
func (c *adminClient) status(ctx context.Context, history bool) (*observe.Status, []byte, error) {
	path := "/status"
	if history {
		path += "?history=1"
	}
	body, err := c.do(ctx, http.MethodGet, path)
	if err != nil {
		return nil, nil, err
	}
	var st observe.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, nil, fmt.Errorf("%s/status is not a bulwark status document: %w", c.addr, err)
	}
	return &st, body, nil
}

// action POSTs to an /api/ path and returns the server's message.
func (c *adminClient) action(ctx context.Context, path string) (string, error) {
	body, err := c.do(ctx, http.MethodPost, path)
	if err != nil {
		return "", err
	}
	var r struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Message == "" {
		return strings.TrimSpace(string(body)), nil
	}
	return r.Message, nil
}

// tokenFileOwnedByListener checks that file belongs to a user that owns a
// socket listening on addr. A file that cannot be looked at passes: reading
// it fails next, with the error that says why.
func tokenFileOwnedByListener(addr, file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("its owner cannot be read")
	}
	uids, err := supervise.ListenerUIDs("", dialAddr(addr))
	if err != nil {
		return err
	}
	if !uids[st.Uid] {
		return fmt.Errorf("it belongs to uid %d, and no process of that user listens on %s", st.Uid, addr)
	}
	return nil
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"bulwark/internal/observe"
)

// defaultAdminAddr is the admin address when --admin is not given; it is
// the default of [admin] listen.
const defaultAdminAddr = "127.0.0.1:9090"

// adminTimeout bounds one call to the admin API.
const adminTimeout = 5 * time.Second

// adminFlags holds the flags shared by the commands that talk to a running
// Bulwark's admin server.
type adminFlags struct {
	addr  string
	token string
}

// register adds --admin and --token to fs.
func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.addr, "admin", defaultAdminAddr, "admin server `address` ([admin] listen)")
	fs.StringVar(&a.token, "token", "", "admin `token` ([admin] token); default $BULWARK_ADMIN_TOKEN")
}

// client returns an admin client, taking the token from the environment
// when --token was not given.
func (a *adminFlags) client() *adminClient {
	tok := a.token
	if tok == "" {
		tok = os.Getenv("BULWARK_ADMIN_TOKEN")
	}
	addr := strings.TrimSuffix(a.addr, "/")
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	return &adminClient{addr: addr, base: base, token: tok, hc: &http.Client{Timeout: adminTimeout}}
}

// adminClient calls the admin API of a running Bulwark.
type adminClient struct {
	addr  string // as the user gave it, for messages
	base  string // URL prefix
	token string
	hc    *http.Client
}

// do sends one request and returns the body of a 2xx answer; any other
// outcome is an error that says what to do about it.
func (c *adminClient) do(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %w", c.addr, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("no bulwark admin server at %s: connection refused — is bulwark running? (see [admin] listen)", c.addr)
		}
		return nil, fmt.Errorf("no bulwark admin server at %s: %w", c.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", c.addr, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && c.token == "":
		return nil, fmt.Errorf("the admin server at %s needs a token: pass --token or set BULWARK_ADMIN_TOKEN ([admin] token)", c.addr)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("the admin server at %s refused the token (401): check --token or BULWARK_ADMIN_TOKEN against [admin] token", c.addr)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, fmt.Errorf("the admin server at %s answered %d: %s", c.addr, resp.StatusCode, msg)
	}
	return body, nil
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

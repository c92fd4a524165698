package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDescriptorReserveKeepsAdminAndAppWorking: with RLIMIT_NOFILE at 256,
// a client that opens connection after connection is refused once the
// open descriptors reach the limit less the reserve (128 here: 64 + twice
// the low profile's upstream pool of 32), and then the admin server still
// answers and a client already connected still reaches the app, which
// needs new descriptors for its upstream connections.
func TestDescriptorReserveKeepsAdminAndAppWorking(t *testing.T) {
	up, _ := startUvicorn(t)
	wrapper := filepath.Join(t.TempDir(), "bulwark-256fds")
	script := fmt.Sprintf("#!/bin/sh\nulimit -n 256 || exit 1\nexec %q \"$@\"\n", bulwarkBin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// max_conns_per_ip above the ceiling: the reserve refuses first.
	in := startBulwarkBin(t, wrapper, "profile = \"low\"\n"+withUpstream(up, "keepalive = 32\n"),
		[]string{"BULWARK_LOG_ACCESS=off", "BULWARK_LISTEN_MAX_CONNS_PER_IP=1000"})
	if got := fdLimitOf(in.cmd.Process.Pid); got != 256 {
		t.Fatalf("bulwark's descriptor limit is %d, want 256", got)
	}
	// The normal client connects first, from 127.0.0.2.
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: in.roots, ServerName: "localhost"},
		MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	normal := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func() (int, error) {
		res, err := normal.Get(in.url("/"))
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, nil
	}
	if code, err := get(); err != nil || code != 200 {
		t.Fatalf("normal client before the attack: %d, %v", code, err)
	}

	// The attacker opens TLS connections until refused, at most 300.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	refused := 0
	for range 300 {
		c, err := attackerTLS(in, "http/1.1")
		if err != nil {
			refused++
			if refused == 5 {
				break
			}
			continue
		}
		held = append(held, c)
	}
	fds := fdsOf(in.cmd.Process.Pid)
	t.Logf("attacker holds %d connections, %d refused; bulwark has %d descriptors open of 256", len(held), refused, fds)
	if refused == 0 {
		t.Fatalf("300 connections accepted with 256 descriptors")
	}
	if fds >= 256-64 {
		t.Errorf("%d descriptors open: the reserve was not kept", fds)
	}
	m := scrape(t, in.admin) // admin answers
	if m[`bulwark_rejected_total{reason="fd_reserve"}`] == 0 {
		t.Errorf(`bulwark_rejected_total{reason="fd_reserve"} = 0, want the refusals counted; accept errors: %v`,
			m[`bulwark_accept_errors_total{reason="fd_exhausted"}`])
	}
	// The connected client's requests still reach the app, several at a
	// time, so that the proxy opens new upstream connections.
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			code, err := get()
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d", code)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("normal client during the attack: %v", err)
		}
	}
	if s := in.status(t); s.MaxConcurrency <= 0 {
		t.Errorf("/status did not answer during the attack: %+v", s)
	}
}

package proxy

import (
	"context"
	"testing"
)

// TestRouteAndRetryHost checks the pool's choice of address: a request
// bound to an address goes there, even one no longer in the list (a
// worker being drained), and a retry goes to another address that is up.
func TestRouteAndRetryHost(t *testing.T) {
	ts, err := parseTargets([]string{"127.0.0.1:1001", "127.0.0.1:1002"})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if got := ts.route(WithUpstream(context.Background(), "127.0.0.1:1002")).name; got != "127.0.0.1:1002" {
			t.Fatalf("route(bound to :1002) = %s", got)
		}
	}
	if got := ts.route(WithUpstream(context.Background(), "unix:/run/old.sock")).name; got != "unix:/run/old.sock" {
		t.Errorf("route(bound to an address not listed) = %s, want it kept", got)
	}
	for range 4 {
		if got := ts.retryHost("127.0.0.1:1001"); got != "127.0.0.1:1002" {
			t.Errorf("retryHost(:1001) = %s, want the other address", got)
		}
	}
	one, _ := parseTargets([]string{"127.0.0.1:1003"})
	if got := one.retryHost("127.0.0.1:1003"); got != "127.0.0.1:1003" {
		t.Errorf("retryHost with one address = %s, want it", got)
	}
	if got := one.retryHost("127.0.0.1:1009"); got != "127.0.0.1:1003" {
		t.Errorf("retryHost of an address the app left = %s, want the current one", got)
	}
}

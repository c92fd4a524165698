package listen

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
)

func TestTCPSetsBacklog(t *testing.T) {
	ss, err := exec.LookPath("ss")
	if err != nil {
		t.Skip("ss (iproute2) not installed; backlog not checked")
	}
	ln, err := TCP(context.Background(), "127.0.0.1:0", 37)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	out, err := exec.Command(ss, "-Hltn", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 3 || fields[2] != "37" {
		t.Errorf("ss says %q; want Send-Q (the backlog) 37", out)
	}
}

func TestTCPIPv6(t *testing.T) {
	ln, err := TCP(context.Background(), "[::1]:0", 16)
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer ln.Close()
	if !strings.HasPrefix(ln.Addr().String(), "[::1]:") {
		t.Errorf("got %s", ln.Addr())
	}
}

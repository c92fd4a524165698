package clientip

import (
	"net/netip"
	"testing"
)

// TestPeerNoAllocation: the usual peer address is taken as RemoteAddr
// spells it, without formatting it again.
func TestPeerNoAllocation(t *testing.T) {
	for _, remote := range []string{"203.0.113.7:5555", "[2001:db8::7]:443"} {
		if n := testing.AllocsPerRun(100, func() { Peer(remote) }); n != 0 {
			t.Errorf("Peer(%q): %v allocations, want 0", remote, n)
		}
	}
}

func TestOf(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"untrusted peer: its own address", "203.0.113.7:1", []string{"1.1.1.1"}, trusted, "203.0.113.7"},
		{"no trusted proxies", "10.0.0.1:1", []string{"1.1.1.1"}, nil, "10.0.0.1"},
		{"trusted peer, one hop", "10.0.0.1:1", []string{"198.51.100.9"}, trusted, "198.51.100.9"},
		{"right-most untrusted wins", "10.0.0.1:1", []string{"6.6.6.6, 198.51.100.9, 10.0.0.2"}, trusted, "198.51.100.9"},
		{"several header lines", "10.0.0.1:1", []string{"6.6.6.6", "198.51.100.9"}, trusted, "198.51.100.9"},
		{"garbage stops the walk", "10.0.0.1:1", []string{"6.6.6.6, junk"}, trusted, "10.0.0.1"},
		{"all trusted: left-most", "10.0.0.1:1", []string{"10.0.0.3, 10.0.0.2"}, trusted, "10.0.0.3"},
		{"trusted peer without XFF", "10.0.0.1:1", nil, trusted, "10.0.0.1"},
		{"mapped IPv4", "[::ffff:203.0.113.7]:1", nil, nil, "203.0.113.7"},
		{"entry with port", "10.0.0.1:1", []string{"[2001:db8::1]:80"}, trusted, "2001:db8::1"},
	}
	for _, tt := range tests {
		if got := Of(tt.remote, tt.xff, tt.trusted); got.String() != tt.want {
			t.Errorf("%s: Of(%q, %q) = %s, want %s", tt.name, tt.remote, tt.xff, got, tt.want)
		}
	}
}

func TestKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"},
		{"2001:db8:1:2::1", "2001:db8:1:2::"},
		{"::1", "::"},
	}
	for _, tt := range tests {
		if got := Key(netip.MustParseAddr(tt.in)); got.String() != tt.want {
			t.Errorf("Key(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

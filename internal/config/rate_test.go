package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in        string
		perSecond float64
		burst     int
	}{
		{"20/s burst 40", 20, 40},
		{"20r/s burst 40", 20, 40},
		{"600/m", 10, 600},
		{"3600/h burst 5", 1, 5},
		{"0.5/s", 0.5, 1},
		{" 5/s ", 5, 5},
		{"off", 0, 0},
		{"", 0, 0},
	}
	for _, tt := range tests {
		r, b, err := ParseRate(tt.in)
		if err != nil || r != tt.perSecond || b != tt.burst {
			t.Errorf("ParseRate(%q) = %v, %d, %v; want %v, %d, nil", tt.in, r, b, err, tt.perSecond, tt.burst)
		}
	}
	for _, in := range []string{"20", "20/d", "x/s", "-1/s", "0/s", "20/s burst", "20/s burst 0", "20/s burst x",
		"20/s 40", "20/s burst 40 x", "2000000/s", "NaN/s", "Inf/s"} {
		if _, _, err := ParseRate(in); !errors.Is(err, errRateSyntax) {
			t.Errorf("ParseRate(%q) = %v, want an error saying what a rate looks like", in, err)
		}
	}
}

// TestPerClientLimitKeys: the profile fills max_conns, max_conns_per_ip and
// rate_per_ip, also where the file says 0 or ""; -1 and "off" turn them off;
// a bad rate names the file, line and key.
func TestPerClientLimitKeys(t *testing.T) {
	load := func(body string) (*Config, error) {
		o := machine("box512mib")
		o.Path = writeConfig(t, body)
		return Load(o)
	}
	c, err := load("[listen]\nmax_conns = 0\n[limits]\nrate_per_ip = \"\"\n")
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if c.Listen.MaxConns != 1900 || c.Listen.MaxConnsPerIP != 256 || c.Limits.RatePerIP != "30/s burst 120" {
		t.Errorf("low profile: max_conns %d, max_conns_per_ip %d, rate_per_ip %q; want 1900, 256, %q",
			c.Listen.MaxConns, c.Listen.MaxConnsPerIP, c.Limits.RatePerIP, "30/s burst 120")
	}
	if s := c.Sources["listen.max_conns"]; s != SourceProfile {
		t.Errorf("max_conns = 0 in the file: source %q, want profile", s)
	}
	c, err = load("[listen]\nmax_conns = -1\nmax_conns_per_ip = 3\n[limits]\nrate_per_ip = \"off\"\n")
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if r, b := c.Limits.Rate(); c.Listen.MaxConns != -1 || c.Listen.MaxConnsPerIP != 3 || r != 0 || b != 0 {
		t.Errorf("got max_conns %d, max_conns_per_ip %d, rate %v burst %d; want -1, 3, 0, 0", c.Listen.MaxConns, c.Listen.MaxConnsPerIP, r, b)
	}
	_, err = load("[listen]\nmax_conns = -2\n\n[limits]\nrate_per_ip = \"20 per second\"\n")
	got := []string{}
	for _, e := range Errors(err) {
		got = append(got, e.Error())
	}
	want := []string{
		"bulwark.toml:2: listen.max_conns: must be between 1 and 10000000, 0 for the profile's value or -1 for no cap, got -2",
		`bulwark.toml:5: limits.rate_per_ip: must be a rate such as "20/s burst 40", "600/m" or "off", got "20 per second"`,
	}
	if len(got) != len(want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasSuffix(got[i], want[i][len("bulwark.toml"):]) || !strings.Contains(got[i], "bulwark.toml:") {
			t.Errorf("error %d = %q, want %q", i, got[i], want[i])
		}
	}
}

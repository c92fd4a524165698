package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr string
	}{
		{"512B", 512, ""},
		{"64KiB", 64 << 10, ""},
		{"16KB", 16_000, ""},
		{"50MiB", 50 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"1MB", 1_000_000, ""},
		{"1GB", 1_000_000_000, ""},
		{"1.5GiB", 3 << 29, ""},
		{" 8MiB ", 8 << 20, ""},
		{"0B", 0, ""},
		{"512", 0, "size needs a unit"},
		{"", 0, "size needs a unit"},
		{"12 parsecs", 0, "unknown unit"},
		{"MiB", 0, "has no number"},
		{"0.5B", 0, "whole number"},
		{"99999999999GiB", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseByteSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"}, {100, "100B"}, {16 * KiB, "16KiB"}, {1536 * KiB, "1536KiB"},
		{50 * MiB, "50MiB"}, {GiB, "1GiB"}, {16_000, "16KB"}, {1_000_000, "1MB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		back, err := ParseByteSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in.String(), back, err, int64(tt.in))
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"5s", 5 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"0s", 0, ""},
		{"30", 0, "duration needs a unit"},
		{"", 0, "duration needs a unit"},
		{"30 seconds", 0, "not valid"},
		{"365d", 365 * 24 * time.Hour, ""},
		{"1w", 7 * 24 * time.Hour, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"2w3d4h5m", (17*24+4)*time.Hour + 5*time.Minute, ""},
		{"1.5d", 0, "not valid"},
		{"d", 0, "not valid"},
		{"99999999999d", 0, "not valid"},
		{"3dd", 0, "not valid"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.D() != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"}, {5 * time.Second, "5s"}, {90 * time.Second, "90s"}, {250 * time.Millisecond, "250ms"},
		{2 * time.Hour, "2h"}, {15 * time.Minute, "15m"}, {time.Hour + 30*time.Second, "1h0m30s"},
		{-time.Second, "-1s"},
		{365 * 24 * time.Hour, "365d"}, {36 * time.Hour, "36h"},
	}
	for _, tt := range tests {
		d := Duration(tt.in)
		if got := d.String(); got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.in, got, tt.want)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", d.String(), back, err, tt.in)
		}
	}
}

// TestHSTSInDays checks the nginx habit the issue met: max-age in days.
func TestHSTSInDays(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.toml")
	if err := os.WriteFile(path, []byte("[tls]\nhsts = \"365d\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(LoadOptions{Path: path, Environ: []string{"BULWARK_UPSTREAM_READ_TIMEOUT=1d"}})
	if err != nil {
		t.Fatalf("Load with hsts = \"365d\": %v", err)
	}
	if c.TLS.HSTS.D() != 365*24*time.Hour || c.Upstream.ReadTimeout.D() != 24*time.Hour {
		t.Errorf("hsts = %v, read_timeout = %v; want 8760h and 24h", c.TLS.HSTS, c.Upstream.ReadTimeout)
	}
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v, want nil", err)
	}
	for _, k := range schemaKeys() {
		if got := c.Sources[k.path]; got != SourceDefault {
			t.Errorf("Default().Sources[%q] = %q, want %q", k.path, got, SourceDefault)
		}
	}
	if got, want := c.Listen.HTTPS, "127.0.0.1:8443"; got != want {
		t.Errorf("Default().Listen.HTTPS = %q, want %q", got, want)
	}
	if got, want := c.Upstream.Address, (Addresses{"127.0.0.1:8002"}); !slices.Equal(got, want) {
		t.Errorf("Default().Upstream.Address = %q, want %q", got, want)
	}
	if got, want := c.Admin.Listen, "127.0.0.1:9090"; got != want {
		t.Errorf("Default().Admin.Listen = %q, want %q", got, want)
	}
}

func machine(name string) LoadOptions {
	root := filepath.Join("testdata", "machines", name)
	return LoadOptions{ProcRoot: filepath.Join(root, "proc"), SysRoot: filepath.Join(root, "sys")}
}

func TestProfileSelection(t *testing.T) {
	tests := []struct {
		machine      string
		wantProfile  string
		wantMemory   int64
		wantReason   string
		wantAppMax   ByteSize
		wantWarnings bool
	}{
		{"box512mib", "low", 512 << 20, "auto: MemTotal 512.0MiB < 1GiB", 204 * MiB, false},
		{"box1500mib", "medium", 1536 << 20, "auto: MemTotal 1.5GiB, between 1GiB and 2GiB", 614 * MiB, false},
		{"box4gib", "high", 4 << 30, "auto: MemTotal 4.0GiB > 2GiB", 2048 * MiB, false},
		{"cgroup768mib", "low", 768 << 20, "auto: cgroup v2 memory.max 768.0MiB < 1GiB", 307 * MiB, false},
		{"cgroupparent", "medium", 1536 << 20, "auto: cgroup v2 memory.max 1.5GiB, between 1GiB and 2GiB", 614 * MiB, false},
		{"cgroupabove", "low", 1048000 << 10, "auto: MemTotal 1023.4MiB < 1GiB", 409 * MiB, false},
		{"cgroupv1", "medium", 2 << 30, "auto: MemTotal 2.0GiB, between 1GiB and 2GiB", 819 * MiB, false},
		{"cgroupv1limit", "low", 768 << 20, "auto: cgroup v1 memory.limit_in_bytes 768.0MiB < 1GiB", 307 * MiB, false},
		{"cgroupv1container", "medium", 1536 << 20, "auto: cgroup v1 memory.limit_in_bytes 1.5GiB, between 1GiB and 2GiB", 614 * MiB, false},
		{"cgroupv1hybrid", "low", 512 << 20, "auto: cgroup v1 memory.limit_in_bytes 512.0MiB < 1GiB", 204 * MiB, false},
		{"nomeminfo", "medium", 0, "auto: machine memory unknown, medium assumed", 0, true},
	}
	for _, tt := range tests {
		c, err := Load(machine(tt.machine))
		if err != nil {
			t.Errorf("Load(%s) = %v, want no error", tt.machine, err)
			continue
		}
		if c.Resolved != tt.wantProfile || c.MachineMemory != tt.wantMemory || !strings.HasPrefix(c.ProfileReason, tt.wantReason) {
			t.Errorf("Load(%s) = profile %q, memory %d, reason %q; want %q, %d, %q",
				tt.machine, c.Resolved, c.MachineMemory, c.ProfileReason, tt.wantProfile, tt.wantMemory, tt.wantReason)
		}
		if c.App.MaxMemory != tt.wantAppMax {
			t.Errorf("Load(%s).App.MaxMemory = %s, want %s", tt.machine, c.App.MaxMemory, tt.wantAppMax)
		}
		if got := len(c.Warnings) > 0; got != tt.wantWarnings {
			t.Errorf("Load(%s).Warnings = %q, want some: %v", tt.machine, c.Warnings, tt.wantWarnings)
		}
	}
}

func TestPickProfile(t *testing.T) {
	tests := []struct {
		mem  int64
		want string
	}{
		{int64(GiB) - 1, "low"}, {int64(GiB), "medium"}, {2 * int64(GiB), "medium"}, {2*int64(GiB) + 1, "high"},
	}
	for _, tt := range tests {
		if got := PickProfile(tt.mem); got != tt.want {
			t.Errorf("PickProfile(%d) = %q, want %q", tt.mem, got, tt.want)
		}
	}
}

func TestApplyProfileTable(t *testing.T) {
	tests := []struct {
		profile         string
		maxBody         ByteSize
		maxConcurrency  int
		releaseInterval time.Duration
		dbPool          string
		appMax          ByteSize
		memLimit        int64
	}{
		{"low", 20 * MiB, 30, 60 * time.Second, "3", 409 * MiB, 48 << 20},
		{"medium", 50 * MiB, 50, 90 * time.Second, "5", 409 * MiB, 96 << 20},
		{"high", 100 * MiB, 100, 0, "10", 512 * MiB, 192 << 20},
	}
	for _, tt := range tests {
		c := Default()
		c.MachineMemory = 1 << 30
		ApplyProfile(c, tt.profile)
		env := c.AppEnv()
		if c.Limits.MaxBody != tt.maxBody || c.Upstream.MaxConcurrency != tt.maxConcurrency ||
			c.Memory.ReleaseInterval.D() != tt.releaseInterval || c.App.MaxMemory != tt.appMax ||
			env["DB_POOL_SIZE"] != tt.dbPool || env["DB_MAX_OVERFLOW"] != tt.dbPool || c.Memory.LimitBytes() != tt.memLimit {
			t.Errorf("ApplyProfile(%s) = max_body %s, max_concurrency %d, release %s, app max %s, pool %s/%s, limit %d; want %s, %d, %s, %s, %s, %d",
				tt.profile, c.Limits.MaxBody, c.Upstream.MaxConcurrency, c.Memory.ReleaseInterval, c.App.MaxMemory,
				env["DB_POOL_SIZE"], env["DB_MAX_OVERFLOW"], c.Memory.LimitBytes(),
				tt.maxBody, tt.maxConcurrency, Duration(tt.releaseInterval), tt.appMax, tt.dbPool, tt.memLimit)
		}
		if got := c.Sources["limits.max_body"]; got != SourceProfile {
			t.Errorf("ApplyProfile(%s): Sources[limits.max_body] = %q, want %q", tt.profile, got, SourceProfile)
		}
	}
}

func TestAppEnv(t *testing.T) {
	c := Default()
	ApplyProfile(c, ProfileLow)
	c.App.Env = map[string]string{"DB_POOL_SIZE": "9", "DEBUG": "1"}
	got := c.AppEnv()
	want := map[string]string{
		"DB_POOL_SIZE": "9", "DEBUG": "1", "DB_MAX_OVERFLOW": "3", "DB_POOL_TIMEOUT": "30",
		"DB_POOL_RECYCLE": "280", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AppEnv() = %v, want %v", got, want)
	}
	if _, ok := c.ProfileAppEnv()["PYTHONHASHSEED"]; ok {
		t.Errorf("ProfileAppEnv() sets PYTHONHASHSEED, want it never set")
	}
	if got := c.ProfileAppEnv()["DB_POOL_SIZE"]; got != "3" {
		t.Errorf("ProfileAppEnv()[DB_POOL_SIZE] = %q, want %q (the profile's, not [app].env's)", got, "3")
	}
}

func TestMemoryLimitBytes(t *testing.T) {
	tests := []struct {
		limit, profile string
		want           int64
	}{
		{"auto", "", 96 << 20}, {"auto", "low", 48 << 20}, {"auto", "high", 192 << 20},
		{"64MiB", "high", 64 << 20}, {"junk", "low", 0},
	}
	for _, tt := range tests {
		m := Memory{Limit: tt.limit, profile: tt.profile}
		if got := m.LimitBytes(); got != tt.want {
			t.Errorf("Memory{Limit: %q} under %q: LimitBytes() = %d, want %d", tt.limit, tt.profile, got, tt.want)
		}
	}
}

// writeConfig writes a config file into a temporary directory.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bulwark.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPrecedence checks env > file > profile > default, value and source.
func TestPrecedence(t *testing.T) {
	path := writeConfig(t, "[limits]\nmax_body = \"10MiB\"\n[upstream]\nkeepalive = 5\naddress = \"127.0.0.1:7000\"\n")
	o := machine("box512mib")
	o.Path = path
	o.Environ = []string{"BULWARK_UPSTREAM_ADDRESS=127.0.0.1:9000", "BULWARK_APP_CHECK_INTERVAL=2s", "PATH=/bin", "BULWARK_CONFIG=/x"}
	c, err := Load(o)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	tests := []struct {
		key     string
		got     any
		want    any
		wantSrc Source
	}{
		{"upstream.address", c.Upstream.Address, Addresses{"127.0.0.1:9000"}, SourceEnv},     // env beats file
		{"upstream.keepalive", c.Upstream.Keepalive, 5, SourceFile},                          // file beats default
		{"limits.max_body", c.Limits.MaxBody, 10 * MiB, SourceFile},                          // file beats profile
		{"upstream.max_concurrency", c.Upstream.MaxConcurrency, 30, SourceProfile},           // profile beats default
		{"app.check_interval", c.App.CheckInterval, Duration(2 * time.Second), SourceEnv},    // env beats default
		{"upstream.queue", c.Upstream.Queue, QueueFor(int64(MemoryLimitLow)), SourceProfile}, // from memory.limit
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) || c.Sources[tt.key] != tt.wantSrc {
			t.Errorf("%s = %v from %q, want %v from %q", tt.key, tt.got, c.Sources[tt.key], tt.want, tt.wantSrc)
		}
	}
}

func TestEnvValues(t *testing.T) {
	tests := []struct {
		env   string
		check func(c *Config) any
		want  any
	}{
		{"BULWARK_LISTEN_HTTP=", func(c *Config) any { return c.Listen.HTTP }, ""},
		{"BULWARK_LISTEN_BACKLOG=512", func(c *Config) any { return c.Listen.Backlog }, 512},
		{"BULWARK_TLS_SESSION_TICKETS=false", func(c *Config) any { return c.TLS.SessionTickets }, false},
		{"BULWARK_LISTEN_MAX_HEADER_BYTES=32KiB", func(c *Config) any { return c.Listen.MaxHeaderBytes }, 32 * KiB},
		{"BULWARK_LISTEN_READ_HEADER_TIMEOUT=3s", func(c *Config) any { return c.Listen.ReadHeaderTimeout }, Duration(3 * time.Second)},
		{"BULWARK_LISTEN_TRUSTED_PROXIES=10.0.0.0/8, ::1,", func(c *Config) any { return c.Listen.TrustedProxies }, []string{"10.0.0.0/8", "::1"}},
		{"BULWARK_LISTEN_UNDERSCORES_IN_HEADERS=true", func(c *Config) any { return c.Listen.UnderscoresInHeaders }, true},
		{"BULWARK_LIMITS_STREAM_PATHS=/events,/ws", func(c *Config) any { return c.Limits.StreamPaths }, []string{"/events", "/ws"}},
		{`BULWARK_APP_COMMAND=["uvicorn", "app:app", "--port", "8002"]`, func(c *Config) any { return c.App.Command }, []string{"uvicorn", "app:app", "--port", "8002"}},
		{"BULWARK_APP_COMMAND=  uvicorn   app:app ", func(c *Config) any { return c.App.Command }, []string{"uvicorn", "app:app"}},
		{"BULWARK_PROFILE=low", func(c *Config) any { return c.Resolved + " " + c.ProfileReason }, "low set in environment BULWARK_PROFILE"},
		{"BULWARK_ADMIN_TOKEN=t0k", func(c *Config) any { return c.Admin.Token }, "t0k"},
	}
	for _, tt := range tests {
		o := machine("box1500mib")
		o.Environ = []string{tt.env}
		c, err := Load(o)
		if err != nil {
			t.Errorf("Load with %s = %v", tt.env, err)
			continue
		}
		if got := tt.check(c); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Load with %s: got %#v, want %#v", tt.env, got, tt.want)
		}
	}
}

func TestFieldErrorFormat(t *testing.T) {
	base := errors.New("must be between 0 and 10000, got -1")
	tests := []struct {
		err  *FieldError
		want string
	}{
		{&FieldError{File: "bulwark.toml", Line: 12, Key: "upstream.keepalive", Err: base}, "bulwark.toml:12: upstream.keepalive: must be between 0 and 10000, got -1"},
		{&FieldError{Env: "BULWARK_UPSTREAM_KEEPALIVE", Key: "upstream.keepalive", Err: base}, "environment BULWARK_UPSTREAM_KEEPALIVE: must be between 0 and 10000, got -1"},
		{&FieldError{Key: "upstream.keepalive", Err: base}, "upstream.keepalive: must be between 0 and 10000, got -1"},
		{&FieldError{File: "b.toml", Line: 3, Column: 7, Err: base}, "b.toml:3:7: must be between 0 and 10000, got -1"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, base) {
			t.Errorf("errors.Is(%q, base) = false, want true", tt.err)
		}
	}
}

func TestLoadErrorsAreFieldErrors(t *testing.T) {
	o := machine("box1500mib")
	o.Path = writeConfig(t, "[upstream]\nkeepalive = -1\n[listen]\nbacklog = \"x\"\n")
	_, err := Load(o)
	errs := Errors(err)
	if len(errs) != 2 {
		t.Fatalf("Load: got %d errors (%v), want 2", len(errs), err)
	}
	for _, e := range errs {
		var fe *FieldError
		if !errors.As(e, &fe) || fe.Line == 0 || fe.Key == "" {
			t.Errorf("error %q: got %#v, want a *FieldError with line and key", e, fe)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	o := machine("box1500mib")
	o.Path = filepath.Join(t.TempDir(), "absent.toml")
	c, err := Load(o)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "absent.toml") {
		t.Errorf("Load(missing) = %v, want an error naming the file that wraps os.ErrNotExist", err)
	}
	if c == nil {
		t.Errorf("Load(missing) returned a nil Config, want the defaults")
	}
}

func TestValidateAddresses(t *testing.T) {
	tests := []struct {
		https, http, admin, token, upstream string
		wantErr                             string // "" = valid
	}{
		{"[::1]:8443", "", "127.0.0.1:9090", "", "127.0.0.1:8002", ""},
		{":443", ":80", "[::1]:9090", "", "[::1]:8002", ""},
		{":443", ":80", "localhost:9090", "", "localhost:8002", ""},
		{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "", "unix:/run/app.sock", ""},
		{":443", ":80", "0.0.0.0:9090", "secret", "127.0.0.1:8002", ""},
		{"127.0.0.1:443", "127.0.0.2:443", "", "", "127.0.0.1:8002", ""},
		{":443", "127.0.0.1:443", "", "", "127.0.0.1:8002", "listen.http: must differ from listen.https"},
		{":443", "", "127.0.0.1:443", "", "127.0.0.1:8002", "admin.listen: must differ from listen.https"},
		{":443", "", "10.1.2.3:9090", "", "127.0.0.1:8002", "set admin.token or bind admin to 127.0.0.1"},
		{"", "", "", "", "127.0.0.1:8002", "listen.https: must be set"},
		{":443", "", "", "", "127.0.0.1:0", "upstream.address: port must be between 1 and 65535"},
		{":443", "", "", "", "unix:app.sock", "must be absolute"},
		{":443", "", "", "", "127.0.0.1", "upstream.address: must be"},
		{"bad host!:443", "", "", "", "127.0.0.1:8002", "host must be an IP address or a host name"},
	}
	for _, tt := range tests {
		c := Default()
		c.Listen.HTTPS, c.Listen.HTTP, c.Admin.Listen, c.Admin.Token, c.Upstream.Address = tt.https, tt.http, tt.admin, tt.token, Addresses{tt.upstream}
		err := c.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("Validate(https %q, http %q, admin %q, upstream %q) = %v, want nil", tt.https, tt.http, tt.admin, tt.upstream, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("Validate(https %q, http %q, admin %q, upstream %q) = %v, want error containing %q", tt.https, tt.http, tt.admin, tt.upstream, err, tt.wantErr)
		}
	}
}

func TestTrustedPrefixes(t *testing.T) {
	l := Listen{TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7", "::1", "2001:db8::/32", "nope", "10.1.2.3/8"}}
	var got []string
	for _, p := range l.TrustedPrefixes() {
		got = append(got, p.String())
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "::1/128", "2001:db8::/32", "10.0.0.0/8"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("TrustedPrefixes() = %v, want %v", got, want)
	}
}

func TestPairs(t *testing.T) {
	tls := TLS{Cert: "/a.pem", Key: "/a.key", Certificates: []CertPair{{Cert: "/b.pem", Key: "/b.key"}}}
	want := []CertPair{{"/a.pem", "/a.key"}, {"/b.pem", "/b.key"}}
	if got := tls.Pairs(); !reflect.DeepEqual(got, want) {
		t.Errorf("Pairs() = %v, want %v", got, want)
	}
	if got := (TLS{}).Pairs(); len(got) != 0 {
		t.Errorf("TLS{}.Pairs() = %v, want none", got)
	}
}

// TestRenderRoundTrip loads a rendered config back and expects the same
// values: Render must be valid TOML that means what it shows.
func TestRenderRoundTrip(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "errors", "valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	in, _, _ := strings.Cut(string(data), goldenSep)
	o := machine("box4gib")
	o.Path = writeConfig(t, in)
	first, err := Load(o)
	if err != nil {
		t.Fatalf("Load(valid) = %v", err)
	}
	first.Admin.Token = "" // rendered redacted; compare the rest
	first.Admin.Listen = "127.0.0.1:9090"
	first.Observe.Database = ""
	for k := range first.App.Env {
		first.App.Env[k] = "<redacted>" // rendered redacted: the keys must survive
	}
	o.Path = writeConfig(t, first.Render())
	second, err := Load(o)
	if err != nil {
		t.Fatalf("Load(Render()) = %v\n%s", err, first.Render())
	}
	for _, k := range schemaKeys() {
		a := reflect.ValueOf(first).Elem().FieldByIndex(k.index).Interface()
		b := reflect.ValueOf(second).Elem().FieldByIndex(k.index).Interface()
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s after Render and Load = %#v, want %#v", k.path, b, a)
		}
	}
}

func TestRenderRedacts(t *testing.T) {
	c := Default()
	c.Admin.Token = "hunter2"
	c.Observe.Database = "postgres://app:hunter2@127.0.0.1/app"
	c.App.Command = []string{"uvicorn", "app:app"}
	c.App.Env = map[string]string{"SECRET_KEY": "hunter2"}
	c.environ = []string{"BULWARK_ADMIN_TOKEN=hunter2"}
	out := c.Render()
	if strings.Contains(out, "hunter2") {
		t.Errorf("Render() shows a secret:\n%s", out)
	}
	if !strings.Contains(out, `token = "<redacted>"`) {
		t.Errorf("Render() does not show token = \"<redacted>\":\n%s", out)
	}
	for _, want := range []string{`env = { SECRET_KEY = "<redacted>" }`, "#   SECRET_KEY=<redacted>  (app.env)",
		"#   BULWARK_ADMIN_TOKEN  (removed", "#   PYTHONDONTWRITEBYTECODE=1  (profile"} {
		if !strings.Contains(out, want) {
			t.Errorf("Render() lacks %q:\n%s", want, out)
		}
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"keepalive-timeout", "keepalive_timeout"}, {"adress", "address"}, {"KEEPALIVE", "keepalive"},
		{"colour", ""}, {"x", ""},
	}
	names := []string{"address", "keepalive", "keepalive_timeout", "queue"}
	for _, tt := range tests {
		if got := suggest(tt.in, names); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestUpstreamAddresses: upstream.address takes one address as a string or
// several as an array, from the file or (comma-separated) the environment,
// renders back to what it read, and is checked element by element.
func TestUpstreamAddresses(t *testing.T) {
	load := func(body string, env ...string) (*Config, error) {
		o := machine("box1500mib")
		o.Path = writeConfig(t, body)
		o.Environ = env
		return Load(o)
	}
	c, err := load("[upstream]\naddress = [\"10.0.0.2:8000\", \"unix:/run/app.sock\"]\n")
	if err != nil {
		t.Fatalf("Load(array) = %v", err)
	}
	if want := (Addresses{"10.0.0.2:8000", "unix:/run/app.sock"}); !slices.Equal(c.Upstream.Address, want) {
		t.Errorf("address from an array = %q, want %q", c.Upstream.Address, want)
	}
	if r := c.Render(); !strings.Contains(r, `address = ["10.0.0.2:8000", "unix:/run/app.sock"]`) {
		t.Errorf("Render of two addresses lacks the array:\n%s", r)
	}
	c, err = load("[upstream]\naddress = \"10.0.0.2:8000\"\n")
	if err != nil {
		t.Fatalf("Load(string) = %v", err)
	}
	if r := c.Render(); !strings.Contains(r, `address = "10.0.0.2:8000"`) {
		t.Errorf("Render of one address is not a plain string:\n%s", r)
	}
	c, err = load("", "BULWARK_UPSTREAM_ADDRESS=10.0.0.2:8000, 10.0.0.3:8000,")
	if err != nil {
		t.Fatalf("Load(env list) = %v", err)
	}
	if want := (Addresses{"10.0.0.2:8000", "10.0.0.3:8000"}); !slices.Equal(c.Upstream.Address, want) {
		t.Errorf("address from the environment = %q, want %q", c.Upstream.Address, want)
	}

	bad := []struct{ body, want string }{
		{"[upstream]\naddress = [\"10.0.0.2:8000\", 7]\n", "upstream.address[1]: expected a string"},
		{"[upstream]\naddress = 7\n", "a string, or an array of strings"},
		{"[upstream]\naddress = []\n", "upstream.address: needs an address"},
		{"[upstream]\naddress = [\"10.0.0.2:8000\", \"10.0.0.2:8000\"]\n", `upstream.address[1]: "10.0.0.2:8000" is named twice`},
		{"[upstream]\naddress = [\"10.0.0.2:8000\", \"10.0.0.3:0\"]\n", "upstream.address[1]: port must be between 1 and 65535"},
		{"[upstream]\naddress = [\"10.0.0.2:8000\", \"10.0.0.3:8000\"]\n[app]\ncommand = [\"uvicorn\", \"app:app\"]\n",
			"upstream.address: names 2 addresses, but with [app]"},
	}
	for _, tt := range bad {
		_, err := load(tt.body)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%q) = %v, want an error containing %q", tt.body, err, tt.want)
			continue
		}
		if fe, ok := errors.AsType[*FieldError](Errors(err)[0]); !ok || fe.Line == 0 {
			t.Errorf("Load(%q): error %v does not name a line", tt.body, err)
		}
	}
}

// TestAppEnviron checks what the app's environment becomes: BULWARK_*
// variables (the admin token among them) are cleared unless [app].env names
// them, the profile fills what neither [app].env nor Bulwark's environment
// sets, and [app].env wins.
func TestAppEnviron(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.toml")
	if err := os.WriteFile(path, []byte("profile = \"low\"\n[app]\ncommand = [\"app\"]\nenv = { BULWARK_FEATURE = \"on\", SECRET = \"s\" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(LoadOptions{Path: path, Environ: []string{"BULWARK_ADMIN_TOKEN=t0k", "BULWARK_FEATURE=off",
		"PYTHONUNBUFFERED=0", "HOME=/home/u"}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	over := c.AppEnvOverrides()
	want := map[string]string{"BULWARK_FEATURE": "on", "SECRET": "s"}
	if !reflect.DeepEqual(over, want) {
		t.Errorf("AppEnvOverrides() = %v, want %v", over, want)
	}
	if got, want := c.AppEnvRemoved(), []string{"BULWARK_ADMIN_TOKEN"}; !slices.Equal(got, want) {
		t.Errorf("AppEnvRemoved() = %v, want %v", got, want)
	}
	var got []string
	for _, v := range c.AppEnviron() {
		got = append(got, v.Name+"="+v.Value+" "+v.From)
	}
	wantList := []string{
		"BULWARK_ADMIN_TOKEN= removed", "BULWARK_FEATURE=on app.env",
		"DB_MAX_OVERFLOW=3 profile", "DB_POOL_RECYCLE=280 profile", "DB_POOL_SIZE=3 profile", "DB_POOL_TIMEOUT=30 profile",
		"PYTHONDONTWRITEBYTECODE=1 profile", "PYTHONUNBUFFERED=0 environment", "SECRET=s app.env",
	}
	if !reflect.DeepEqual(got, wantList) {
		t.Errorf("AppEnviron() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantList, "\n"))
	}
}

// TestQueueFromMemoryLimit: upstream.queue's default follows memory.limit
// (half of it at QueueRequestCost a waiting request), and a count in the
// file is kept as it is.
func TestQueueFromMemoryLimit(t *testing.T) {
	tests := []struct {
		file string
		want int
		src  Source
	}{
		{"", 2400, SourceProfile}, // low: 24MiB ÷ 10KiB
		{"[memory]\nlimit = \"200MiB\"\n", 10200, SourceProfile},
		{"[upstream]\nqueue = 7\n", 7, SourceFile},
		{"[upstream]\nqueue = 0\n", 0, SourceFile},
	}
	for _, tt := range tests {
		o := machine("box512mib")
		o.Path = writeConfig(t, tt.file)
		c, err := Load(o)
		if err != nil {
			t.Fatalf("Load(%q) = %v", tt.file, err)
		}
		if c.Upstream.Queue != tt.want || c.Sources["upstream.queue"] != tt.src {
			t.Errorf("%q: upstream.queue = %d from %q, want %d from %q", tt.file, c.Upstream.Queue, c.Sources["upstream.queue"], tt.want, tt.src)
		}
	}
}

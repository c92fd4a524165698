// Package config is Bulwark's configuration: the TOML schema, Default(), the
// memory profiles, BULWARK_<SECTION>_<KEY> environment overrides, and
// validation that reports every problem with its file, line and key.
//
// Load is the one entry point for run and check: defaults, then the file
// (strict: unknown keys, wrong types and sizes or durations without a unit
// are errors), then the environment, then the profile for keys neither set,
// then Validate. Config only describes; turning it into each component's
// Options, and checking that files such as certificates exist, is left to
// the composition root (internal/app) and the components themselves.
package config

import (
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Source says where the value of a key came from.
type Source string

// The sources of a value, in increasing precedence.
const (
	SourceDefault Source = "default"
	SourceProfile Source = "profile"
	SourceFile    Source = "file"
	SourceEnv     Source = "env"
	// SourceGenerated marks a value Bulwark made itself: the admin token
	// generated on first run when admin.token is not set.
	SourceGenerated Source = "generated"
)

// Profile names. ProfileAuto picks one of the others from the machine's
// memory (see Load).
const (
	ProfileAuto   = "auto"
	ProfileLow    = "low"
	ProfileMedium = "medium"
	ProfileHigh   = "high"
)

// Defaults that do not depend on the profile. Profile-dependent defaults are
// in the profiles table (see ApplyProfile); Default() uses the medium ones.
const (
	DefaultHTTPS             = "127.0.0.1:8443"
	DefaultBacklog           = 2048
	DefaultKeepaliveTimeout  = 5 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultMaxHeaderBytes    = 16 * KiB
	DefaultMinVersion        = "1.2"
	DefaultUpstreamAddress   = "127.0.0.1:8002"
	DefaultUpstreamKeepalive = 32
	DefaultUpstreamTimeout   = 60 * time.Second // connect, send and read, as nginx
	DefaultQueueTimeout      = 30 * time.Second
	DefaultBodyBuffer        = 128 * KiB
	DefaultSpoolDisk         = 1 * GiB
	DefaultAppDir            = "."
	DefaultHealth            = "/"
	DefaultStartTimeout      = 60 * time.Second
	DefaultStopTimeout       = 10 * time.Second
	// DefaultCheckInterval is 1s, not DESIGN's 30s: PM2's 30s check misses
	// fast leaks, and at 5s a leak reached three times its budget before
	// the restart began. The watchdog samples faster near the limit.
	DefaultCheckInterval = 1 * time.Second
	DefaultRestartHold   = 30 * time.Second
	DefaultMemoryLimit   = "auto"
	DefaultAdminListen   = "127.0.0.1:9090"
	DefaultLogLevel      = "info"
	DefaultLogFormat     = "text"
	DefaultLogAccess     = "stderr"
)

// Config is Bulwark's whole configuration. The exported fields with toml tags
// are the file's keys; the others are filled by Load.
type Config struct {
	// Profile is auto, low, medium or high.
	Profile  string   `toml:"profile"`
	Listen   Listen   `toml:"listen"`
	TLS      TLS      `toml:"tls"`
	Upstream Upstream `toml:"upstream"`
	Limits   Limits   `toml:"limits"`
	App      App      `toml:"app"`
	Memory   Memory   `toml:"memory"`
	Admin    Admin    `toml:"admin"`
	Observe  Observe  `toml:"observe"`
	Log      Log      `toml:"log"`
	Acme     Acme     `toml:"acme"`
	// The edge sections (edge.go).
	CORS     CORS     `toml:"cors"`
	Compress Compress `toml:"compress"`
	Static   []Static `toml:"static"`
	Route    []Route  `toml:"route"`

	// File is the file Load read, "" when none.
	File string `toml:"-"`
	// Resolved is the profile in force: low, medium or high.
	Resolved string `toml:"-"`
	// ProfileReason says why Resolved was chosen, e.g.
	// "auto: cgroup v2 memory.max 768.0MiB < 1GiB" or "set in file".
	ProfileReason string `toml:"-"`
	// MachineMemory is the memory, in bytes, the profile was computed from:
	// the smaller of this process's cgroup memory limit (v2 memory.max or
	// v1 memory.limit_in_bytes) and MemTotal. Zero when it could not be read.
	MachineMemory int64 `toml:"-"`
	// Sources maps each key path ("upstream.address") to where its value
	// came from.
	Sources map[string]Source `toml:"-"`
	// Warnings are non-fatal notes for check and run to print.
	Warnings []string `toml:"-"`

	// locs maps a key path to where it was set, for error messages.
	locs map[string]location
	// environ is the environment Load read (Bulwark's own), from which the
	// app's environment is derived (AppEnviron).
	environ []string
}

// location is where a key was set: a file line or an environment variable.
type location struct {
	line int
	env  string
}

// Listen is the [listen] table: the client-facing listeners.
type Listen struct {
	// HTTPS is the TLS listener's address.
	HTTPS string `toml:"https"`
	// HTTP is the plain listener that redirects to HTTPS; "" = off.
	HTTP string `toml:"http"`
	// Backlog is the listen(2) backlog, 1..65535.
	Backlog int `toml:"backlog"`
	// KeepaliveTimeout is how long an idle client connection is kept.
	KeepaliveTimeout Duration `toml:"keepalive_timeout"`
	// ShutdownTimeout bounds the drain on SIGTERM or after an upgrade:
	// requests in flight may finish within it; then every remaining
	// connection (WebSockets, SSE streams) is closed.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// ReadHeaderTimeout bounds reading a request's headers (slowloris).
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	// MaxHeaderBytes is the largest request header block; 431 beyond.
	MaxHeaderBytes ByteSize `toml:"max_header_bytes"`
	// TrustedProxies are CIDRs or bare IPs whose X-Forwarded-For is believed.
	TrustedProxies []string `toml:"trusted_proxies"`
	// MaxConns caps open client connections, all clients together
	// (profile; 0 = the profile's value, -1 = no cap).
	MaxConns int `toml:"max_conns"`
	// MaxConnsPerIP caps the open connections of one client address, an
	// IPv6 client's /64 (nginx limit_conn; profile; 0 = the profile's
	// value, -1 = no cap). Trusted proxies are exempt.
	MaxConnsPerIP int `toml:"max_conns_per_ip"`
	// UnderscoresInHeaders passes request header names that contain "_" on
	// to the app (nginx underscores_in_headers); off, they are dropped. A
	// name that reads as one Bulwark sets (X_Real_IP) is dropped either way.
	UnderscoresInHeaders bool `toml:"underscores_in_headers"`
}

// TrustedPrefixes returns TrustedProxies as prefixes (a bare IP becomes a
// single-address prefix). Entries that do not parse are skipped; Validate
// reports them.
func (l Listen) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range l.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix parses a CIDR or a bare IP address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// CertPair is one certificate and its private key, as PEM file paths.
type CertPair struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// TLS is the [tls] table.
type TLS struct {
	// Cert and Key are one certificate pair; both or neither.
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// Certificates are more pairs ([[tls.certificates]]), chosen by SNI;
	// combined with Cert/Key when those are set too (see Pairs).
	Certificates []CertPair `toml:"certificates"`
	// MinVersion is "1.2" or "1.3".
	MinVersion string `toml:"min_version"`
	// SessionTickets turns TLS session tickets on.
	SessionTickets bool `toml:"session_tickets"`
	// TicketKeyFile shares ticket keys between instances; "" = keys kept in
	// memory only.
	TicketKeyFile string `toml:"ticket_key_file"`
	// HSTS is the Strict-Transport-Security max-age; 0 = no header.
	HSTS Duration `toml:"hsts"`
	// CertDir is where the self-signed development certificate is kept when
	// no certificate is configured; "" = $XDG_STATE_HOME/bulwark or
	// ~/.local/state/bulwark (the tlsconf package resolves it).
	CertDir string `toml:"cert_dir"`
}

// Pairs returns every configured certificate pair: Cert/Key first when set,
// then Certificates. Empty means "use the development certificate".
func (t TLS) Pairs() []CertPair {
	var out []CertPair
	if t.Cert != "" || t.Key != "" {
		out = append(out, CertPair{Cert: t.Cert, Key: t.Key})
	}
	return append(out, t.Certificates...)
}

// Upstream is the [upstream] table: the app Bulwark proxies to.
type Upstream struct {
	// Address is "host:port" or "unix:/absolute/path"; several, when the
	// app runs elsewhere on several addresses, share the requests.
	Address Addresses `toml:"address"`
	// Keepalive is the number of idle pooled connections, 0..10000.
	Keepalive int `toml:"keepalive"`
	// ConnectTimeout bounds connecting to the app.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// SendTimeout is the longest gap between two writes to the app.
	SendTimeout Duration `toml:"send_timeout"`
	// ReadTimeout is the longest gap between two reads from the app.
	ReadTimeout Duration `toml:"read_timeout"`
	// MaxConcurrency is the number of requests in flight to the app (profile).
	MaxConcurrency int `toml:"max_concurrency"`
	// Queue is how many more requests may wait for a slot.
	Queue int `toml:"queue"`
	// QueueTimeout is how long a request waits for a slot before a 503.
	QueueTimeout Duration `toml:"queue_timeout"`
}

// Addresses is the app's address, or several: in the file a string or an
// array of strings, in the environment a comma-separated list.
type Addresses []string

// Limits is the [limits] table: body limits and spooling.
type Limits struct {
	// MaxBody is the largest request body; 413 beyond (profile).
	MaxBody ByteSize `toml:"max_body"`
	// BodyBuffer is how much of one body is kept in memory before spilling
	// to disk.
	BodyBuffer ByteSize `toml:"body_buffer"`
	// BufferRequests spools whole requests before the app sees them.
	BufferRequests bool `toml:"buffer_requests"`
	// BufferResponses reads the app's answers fast into the spool.
	BufferResponses bool `toml:"buffer_responses"`
	// SpoolDir is the spool directory; "" lets the spool package choose.
	SpoolDir string `toml:"spool_dir"`
	// SpoolMemory is the process-wide budget of spool memory (profile).
	SpoolMemory ByteSize `toml:"spool_memory"`
	// SpoolDisk caps the spool's disk use.
	SpoolDisk ByteSize `toml:"spool_disk"`
	// StreamPaths are path prefixes whose responses are never buffered.
	StreamPaths []string `toml:"stream_paths"`
	// RatePerIP is the request rate one client address may keep up, such
	// as "20/s burst 40" or "600/m" (nginx limit_req; see ParseRate);
	// beyond it the answer is 429 with Retry-After. "" = the profile's
	// value, "off" = no limit.
	RatePerIP string `toml:"rate_per_ip"`
}

// App is the [app] table: the supervised application.
type App struct {
	// Command is the app's argv; empty = no app is supervised.
	Command []string `toml:"command"`
	// Dir is the app's working directory.
	Dir string `toml:"dir"`
	// Env is added to the app's environment (see AppEnv).
	Env map[string]string `toml:"env"`
	// Health is the HTTP path that answers < 500 when the app is ready.
	Health string `toml:"health"`
	// StartTimeout bounds the wait for the app to become ready.
	StartTimeout Duration `toml:"start_timeout"`
	// StopTimeout is the wait between SIGTERM and SIGKILL.
	StopTimeout Duration `toml:"stop_timeout"`
	// MaxMemory restarts the app gracefully above this (its whole process
	// tree); 0 = no limit (profile: 40% of machine memory, high 50%).
	MaxMemory ByteSize `toml:"max_memory"`
	// CheckInterval is how often the app's memory is sampled.
	CheckInterval Duration `toml:"check_interval"`
	// RestartHold is how long requests wait for a restarting app.
	RestartHold Duration `toml:"restart_hold"`
	// Workers is how many copies of the app run side by side, each its
	// own supervised process on its own {port} or {socket}; WorkersAuto
	// sizes the pool from the memory budget (see PoolSize).
	Workers Workers `toml:"workers"`
	// MaxRequests recycles a worker after this many requests, plus up to
	// MaxRequestsJitter more (drawn per worker); 0 = never.
	MaxRequests       int `toml:"max_requests"`
	MaxRequestsJitter int `toml:"max_requests_jitter"`
	// MaxLifetime recycles a worker this long after it started; 0 = never.
	MaxLifetime Duration `toml:"max_lifetime"`
	// RequestTimeout replaces a worker that has not answered one request
	// within it; the client gets a 504. 0 = no limit.
	RequestTimeout Duration `toml:"request_timeout"`
}

// Memory is the [memory] table: Bulwark's own memory.
type Memory struct {
	// Limit is Bulwark's Go memory limit: "auto" or a size (see LimitBytes).
	Limit string `toml:"limit"`
	// ReleaseInterval is how often freed memory is returned to the OS;
	// 0 = never (profile).
	ReleaseInterval Duration `toml:"release_interval"`

	// profile is the profile in force, set by ApplyProfile, for "auto".
	profile string
}

// The admission queue is bounded by memory, not by a small count (issue
// 16): a request waiting for a slot costs QueueRequestCost of Go heap and
// stack (measured by bench/cmd/queuecost, h1 10.1 KiB, h2 7.3 KiB per
// stream), and the queue may take half of memory.limit. Past that the
// memory-pressure shedding at 90 % of the limit still holds.
const (
	// QueueRequestCost is what one waiting request costs, rounded up.
	QueueRequestCost = 10 * KiB
	// DefaultQueue is upstream.queue for the medium profile's 96MiB:
	// 48MiB ÷ 10KiB = 4915, rounded down to 4900.
	DefaultQueue = int(MemoryLimitMedium / 2 / QueueRequestCost / 100 * 100)
)

// QueueFor returns upstream.queue's default for a Go memory limit of
// limit bytes: half of it divided by QueueRequestCost, rounded down to a
// hundred, at least 100.
func QueueFor(limit int64) int {
	return max(int(limit/2/int64(QueueRequestCost)/100*100), 100)
}

// Memory limits that Limit "auto" resolves to, per profile.
const (
	MemoryLimitLow    = 48 * MiB
	MemoryLimitMedium = 96 * MiB
	MemoryLimitHigh   = 192 * MiB
)

// LimitBytes returns the Go memory limit in bytes: for "auto", 48MiB,
// 96MiB or 192MiB by profile (medium before a profile is applied); for a
// size, that size; 0 when Limit does not parse (Validate reports it).
func (m Memory) LimitBytes() int64 {
	if m.Limit == "" || m.Limit == DefaultMemoryLimit {
		switch m.profile {
		case ProfileLow:
			return int64(MemoryLimitLow)
		case ProfileHigh:
			return int64(MemoryLimitHigh)
		default:
			return int64(MemoryLimitMedium)
		}
	}
	b, err := ParseByteSize(m.Limit)
	if err != nil {
		return 0
	}
	return int64(b)
}

// Admin is the [admin] table: metrics, status and the dashboard.
type Admin struct {
	// Listen is the admin server's address; "" = off.
	Listen string `toml:"listen"`
	// Token, when set, is required as a Bearer token.
	Token string `toml:"token"`
}

// Observe is the [observe] table.
type Observe struct {
	// Database is "" or a mysql:// or postgres:// URL whose connections in
	// use are measured.
	Database string `toml:"database"`
}

// Log is the [log] table.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
	// Format is text or json.
	Format string `toml:"format"`
	// Access is where access log lines go: stderr, stdout, off or a file.
	Access string `toml:"access"`
	// AccessFormat is text or json.
	AccessFormat string `toml:"access_format"`
}

// SlogLevel is Level as a log/slog level; info for anything else.
func (l Log) SlogLevel() slog.Level {
	switch strings.ToLower(l.Level) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// ACME challenge types [acme] challenges may list.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Acme is the [acme] table: certificates obtained and renewed by ACME.
type Acme struct {
	// Domains are the names to obtain certificates for; empty = ACME off.
	Domains []string `toml:"domains"`
	// Email is the ACME account's contact; "" = none.
	Email string `toml:"email"`
	// CA is the ACME directory URL; "" = Let's Encrypt production, or its
	// staging directory when Staging is set.
	CA      string `toml:"ca"`
	Staging bool   `toml:"staging"`
	// CARoot is a PEM bundle trusted for the ACME server's own TLS (a
	// private or test CA); "" = the system roots.
	CARoot string `toml:"ca_root"`
	// Challenges are the challenge types offered: http-01, tls-alpn-01.
	Challenges []string `toml:"challenges"`
	// Storage is the directory certificates, keys and locks are kept in;
	// "" = <state dir>/acme (the acme package resolves it).
	Storage string `toml:"storage"`
}

// Enabled reports whether ACME manages any name.
func (a Acme) Enabled() bool { return len(a.Domains) > 0 }

// Default returns a Config holding every default, with the medium
// profile's values in the profile keys but no profile applied: Resolved is
// empty and every key's source is "default".
func Default() *Config {
	med := profileFor(ProfileMedium)
	c := &Config{
		Profile: ProfileAuto,
		Listen: Listen{
			HTTPS:             DefaultHTTPS,
			Backlog:           DefaultBacklog,
			KeepaliveTimeout:  Duration(DefaultKeepaliveTimeout),
			ShutdownTimeout:   Duration(DefaultShutdownTimeout),
			ReadHeaderTimeout: Duration(DefaultReadHeaderTimeout),
			MaxHeaderBytes:    DefaultMaxHeaderBytes,
			TrustedProxies:    []string{},
			MaxConns:          med.maxConns,
			MaxConnsPerIP:     med.maxConnsPerIP,
		},
		TLS: TLS{
			MinVersion:     DefaultMinVersion,
			SessionTickets: true,
		},
		Upstream: Upstream{
			Address:        Addresses{DefaultUpstreamAddress},
			Keepalive:      DefaultUpstreamKeepalive,
			ConnectTimeout: Duration(DefaultUpstreamTimeout),
			SendTimeout:    Duration(DefaultUpstreamTimeout),
			ReadTimeout:    Duration(DefaultUpstreamTimeout),
			MaxConcurrency: med.maxConcurrency,
			Queue:          DefaultQueue,
			QueueTimeout:   Duration(DefaultQueueTimeout),
		},
		Limits: Limits{
			MaxBody:         med.maxBody,
			BodyBuffer:      DefaultBodyBuffer,
			BufferRequests:  true,
			BufferResponses: true,
			SpoolMemory:     med.spoolMemory,
			SpoolDisk:       DefaultSpoolDisk,
			StreamPaths:     []string{},
			RatePerIP:       med.ratePerIP,
		},
		App: App{
			Command:       []string{},
			Dir:           DefaultAppDir,
			Env:           map[string]string{},
			Health:        DefaultHealth,
			StartTimeout:  Duration(DefaultStartTimeout),
			StopTimeout:   Duration(DefaultStopTimeout),
			CheckInterval: Duration(DefaultCheckInterval),
			RestartHold:   Duration(DefaultRestartHold),
			Workers:       1,
		},
		Memory: Memory{
			Limit:           DefaultMemoryLimit,
			ReleaseInterval: Duration(med.releaseInterval),
		},
		Admin: Admin{Listen: DefaultAdminListen},
		Log: Log{
			Level:        DefaultLogLevel,
			Format:       DefaultLogFormat,
			Access:       DefaultLogAccess,
			AccessFormat: DefaultLogFormat,
		},
		Acme: Acme{
			Domains:    []string{},
			Challenges: []string{ChallengeHTTP01, ChallengeTLSALPN01},
		},
		CORS:     defaultCORS(),
		Compress: defaultCompress(),
		Static:   []Static{},
		Route:    []Route{},
		Sources:  map[string]Source{},
		locs:     map[string]location{},
	}
	for _, k := range schemaKeys() {
		c.Sources[k.path] = SourceDefault
	}
	return c
}

package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks every key and the rules between keys, and returns every
// problem joined (see Errors), each a *FieldError naming the key and what
// would be valid. It does not touch the file system: whether certificate
// files exist is for the tls package to say.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.oneOf("profile", c.Profile, ProfileAuto, ProfileLow, ProfileMedium, ProfileHigh)
	c.validateListen(v)
	c.validateTLS(v)
	c.validateUpstream(v)
	c.validateLimits(v)
	c.validateApp(v)
	c.validateMemory(v)
	c.validateAdmin(v)
	c.validateAcme(v)
	c.validateCORS(v)
	c.validateStatic(v)
	c.validateCompress(v)
	c.validateRoutes(v)
	if db := c.Observe.Database; db != "" {
		u, err := url.Parse(db)
		switch {
		case err != nil || u.Host == "":
			v.fail("observe.database", errors.New(`must be a URL such as "mysql://user:pass@127.0.0.1:3306/app" or "postgres://user:pass@127.0.0.1:5432/app"`))
		case !slices.Contains([]string{"mysql", "postgres", "postgresql"}, u.Scheme):
			v.fail("observe.database", fmt.Errorf("scheme must be mysql or postgres, got %q", u.Scheme))
		}
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")
	v.oneOf("log.access_format", c.Log.AccessFormat, "text", "json")
	if c.Log.Access == "" {
		v.fail("log.access", errors.New(`must be "stderr", "stdout", "off" or a file path`))
	}
	sortErrors(v.errs)
	return errors.Join(v.errs...)
}

// warn adds a warning once, however often Validate runs.
func (c *Config) warn(msg string) {
	if !slices.Contains(c.Warnings, msg) {
		c.Warnings = append(c.Warnings, msg)
	}
}

type validator struct {
	c    *Config
	errs []error
}

func (v *validator) fail(key string, err error) {
	v.errs = append(v.errs, v.c.errAt(key, err))
}

// failNear reports a problem with key, located where near was set (for a
// missing key whose partner is present).
func (v *validator) failNear(key, near string, err error) {
	fe := v.c.errAt(near, err)
	fe.Key = key
	v.errs = append(v.errs, fe)
}

func (v *validator) oneOf(key, got string, valid ...string) {
	if !slices.Contains(valid, got) {
		v.fail(key, fmt.Errorf("must be one of %s; got %q", strings.Join(valid, ", "), got))
	}
}

func (v *validator) intRange(key string, got, lo, hi int) {
	if got < lo || got > hi {
		v.fail(key, fmt.Errorf("must be between %d and %d, got %d", lo, hi, got))
	}
}

// duration checks lo <= got (and got <= hi when hi > 0).
func (v *validator) duration(key string, got Duration, lo, hi time.Duration) {
	switch {
	case got.D() < lo && lo == 0:
		v.fail(key, fmt.Errorf("must not be negative, got %s", got))
	case got.D() < lo:
		v.fail(key, fmt.Errorf("must be at least %s, got %s", Duration(lo), got))
	case hi > 0 && got.D() > hi:
		v.fail(key, fmt.Errorf("must be at most %s, got %s", Duration(hi), got))
	}
}

// positive checks a duration that must be above zero.
func (v *validator) positive(key string, got Duration) {
	if got <= 0 {
		v.fail(key, fmt.Errorf("must be more than 0s, got %s", got))
	}
}

func (v *validator) size(key string, got, lo, hi ByteSize) {
	if got < lo || (hi > 0 && got > hi) {
		if hi > 0 {
			v.fail(key, fmt.Errorf("must be between %s and %s, got %s", lo, hi, got))
		} else {
			v.fail(key, fmt.Errorf("must be at least %s, got %s", lo, got))
		}
	}
}

// listenAddr checks a listening address ("host:port", ":port", "[::1]:port";
// port 0 asks the kernel for one) and returns it split.
func (v *validator) listenAddr(key, addr string) (host string, port int, ok bool) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(key, fmt.Errorf(`must be "host:port", ":port" or "[ipv6]:port", got %q`, addr))
		return "", 0, false
	}
	port, err = strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		v.fail(key, fmt.Errorf("port must be a number between 0 and 65535, got %q", portStr))
		return "", 0, false
	}
	if host != "" && !validHost(host) {
		v.fail(key, fmt.Errorf("host must be an IP address or a host name, got %q", host))
		return "", 0, false
	}
	return host, port, true
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// isWildcard reports whether a listening host means every address.
func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// isLoopback reports whether host only accepts local connections.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

type boundAddr struct {
	host string
	port int
}

// clash reports whether two listeners would try to bind the same socket.
func clash(a, b boundAddr) bool {
	if a.port == 0 || b.port == 0 || a.port != b.port {
		return false
	}
	return isWildcard(a.host) || isWildcard(b.host) || strings.EqualFold(a.host, b.host)
}

func (c *Config) validateListen(v *validator) {
	l := c.Listen
	if l.HTTPS == "" {
		v.fail("listen.https", errors.New(`must be set, e.g. ":443" or "127.0.0.1:8443"`))
	} else {
		v.listenAddr("listen.https", l.HTTPS)
	}
	if l.HTTP != "" {
		if host, port, ok := v.listenAddr("listen.http", l.HTTP); ok {
			if h, p, err := splitPort(l.HTTPS); err == nil && clash(boundAddr{h, p}, boundAddr{host, port}) {
				v.fail("listen.http", fmt.Errorf("must differ from listen.https (%q)", l.HTTPS))
			}
		}
	}
	v.intRange("listen.backlog", l.Backlog, 1, 65535)
	v.positive("listen.keepalive_timeout", l.KeepaliveTimeout)
	v.positive("listen.shutdown_timeout", l.ShutdownTimeout)
	v.positive("listen.read_header_timeout", l.ReadHeaderTimeout)
	v.size("listen.max_header_bytes", l.MaxHeaderBytes, 1*KiB, 1*MiB)
	for i, p := range l.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			v.fail(fmt.Sprintf("listen.trusted_proxies[%d]", i),
				fmt.Errorf(`must be an IP address or a CIDR such as "10.0.0.0/8", got %q`, p))
		}
	}
	v.connCap("listen.max_conns", l.MaxConns)
	v.connCap("listen.max_conns_per_ip", l.MaxConnsPerIP)
}

// connCap checks a connection cap: a count, 0 for the profile's value or
// -1 for none.
func (v *validator) connCap(key string, got int) {
	if got < -1 || got > 10_000_000 {
		v.fail(key, fmt.Errorf("must be between 1 and 10000000, 0 for the profile's value or -1 for no cap, got %d", got))
	}
}

func (c *Config) validateTLS(v *validator) {
	t := c.TLS
	switch {
	case t.Cert != "" && t.Key == "":
		v.failNear("tls.key", "tls.cert", errors.New("must be set when tls.cert is: give the private key's file"))
	case t.Key != "" && t.Cert == "":
		v.failNear("tls.cert", "tls.key", errors.New("must be set when tls.key is: give the certificate's file"))
	}
	for i, p := range t.Certificates {
		if p.Cert == "" {
			v.fail(fmt.Sprintf("tls.certificates[%d].cert", i), errors.New("must be set: give the certificate's file"))
		}
		if p.Key == "" {
			v.fail(fmt.Sprintf("tls.certificates[%d].key", i), errors.New("must be set: give the private key's file"))
		}
	}
	v.oneOf("tls.min_version", t.MinVersion, "1.2", "1.3")
	v.duration("tls.hsts", t.HSTS, 0, 0)
	if t.TicketKeyFile != "" && !t.SessionTickets {
		c.warn("tls.ticket_key_file is ignored: tls.session_tickets is false")
	}
}

func (c *Config) validateUpstream(v *validator) {
	u := c.Upstream
	switch {
	case len(u.Address) == 0:
		v.fail("upstream.address", errors.New(`needs an address, e.g. "127.0.0.1:8002"`))
	case len(u.Address) > 1 && len(c.App.Command) > 0:
		v.fail("upstream.address", fmt.Errorf("names %d addresses, but with [app] Bulwark runs one app at one address: "+
			"name one, or leave [app] out to share requests among apps that run elsewhere", len(u.Address)))
	}
	seen := make(map[string]bool, len(u.Address))
	for i, addr := range u.Address {
		key := "upstream.address"
		if len(u.Address) > 1 {
			key = fmt.Sprintf("upstream.address[%d]", i)
		}
		if seen[addr] {
			v.fail(key, fmt.Errorf("%q is named twice", addr))
		}
		seen[addr] = true
		validateUpstreamAddress(v, key, addr)
	}
	v.intRange("upstream.keepalive", u.Keepalive, 0, 10000)
	v.positive("upstream.connect_timeout", u.ConnectTimeout)
	v.positive("upstream.send_timeout", u.SendTimeout)
	v.positive("upstream.read_timeout", u.ReadTimeout)
	v.intRange("upstream.max_concurrency", u.MaxConcurrency, 1, 100000)
	v.intRange("upstream.queue", u.Queue, 0, 1000000)
	v.positive("upstream.queue_timeout", u.QueueTimeout)
}

func validateUpstreamAddress(v *validator, key, addr string) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !filepath.IsAbs(path) {
			v.fail(key, fmt.Errorf(`unix socket path must be absolute, e.g. "unix:/run/app.sock", got %q`, addr))
		}
	} else if host, port, ok := v.listenAddr(key, addr); ok {
		switch {
		case host == "":
			v.fail(key, fmt.Errorf(`needs a host, e.g. "127.0.0.1:8002", got %q`, addr))
		case port == 0:
			v.fail(key, fmt.Errorf("port must be between 1 and 65535, got %d", port))
		}
	}
}

func (c *Config) validateLimits(v *validator) {
	l := c.Limits
	v.size("limits.max_body", l.MaxBody, 1, 0)
	v.size("limits.body_buffer", l.BodyBuffer, 1*KiB, 0)
	if l.MaxBody > 0 && l.BodyBuffer > l.MaxBody {
		v.fail("limits.body_buffer", fmt.Errorf("must not exceed limits.max_body (%s), got %s", l.MaxBody, l.BodyBuffer))
	}
	v.size("limits.spool_memory", l.SpoolMemory, 64*KiB, 0)
	if l.SpoolMemory >= 64*KiB && l.BodyBuffer > l.SpoolMemory {
		v.fail("limits.spool_memory", fmt.Errorf("must be at least limits.body_buffer (%s), got %s", l.BodyBuffer, l.SpoolMemory))
	}
	v.size("limits.spool_disk", l.SpoolDisk, 1*MiB, 0)
	if l.SpoolDir != "" && !filepath.IsAbs(l.SpoolDir) {
		v.fail("limits.spool_dir", fmt.Errorf(`must be an absolute path or "" (automatic), got %q`, l.SpoolDir))
	}
	if _, _, err := ParseRate(l.RatePerIP); err != nil {
		v.fail("limits.rate_per_ip", err)
	}
	for i, p := range l.StreamPaths {
		if !strings.HasPrefix(p, "/") {
			v.fail(fmt.Sprintf("limits.stream_paths[%d]", i), fmt.Errorf(`must be a path prefix starting with "/", got %q`, p))
		}
	}
}

func (c *Config) validateApp(v *validator) {
	a := c.App
	if len(a.Command) > 0 && strings.TrimSpace(a.Command[0]) == "" {
		v.fail("app.command", errors.New(`first element must be the program to run, e.g. ["uvicorn", "app:app"]`))
	}
	if a.Dir == "" {
		v.fail("app.dir", errors.New(`must be a directory, e.g. "."`))
	}
	for k := range a.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.fail("app.env", fmt.Errorf("variable name %q is not valid: no '=' and not empty", k))
		}
		if k == "PYTHONHASHSEED" {
			c.warn("app.env sets PYTHONHASHSEED: that turns off hash randomisation, a defence against hash flooding")
		}
	}
	if !strings.HasPrefix(a.Health, "/") {
		v.fail("app.health", fmt.Errorf(`must be an HTTP path starting with "/", got %q`, a.Health))
	}
	v.positive("app.start_timeout", a.StartTimeout)
	v.positive("app.stop_timeout", a.StopTimeout)
	v.size("app.max_memory", a.MaxMemory, 0, 0)
	if a.MaxMemory > 0 && a.MaxMemory < 16*MiB {
		v.fail("app.max_memory", fmt.Errorf(`must be at least 16MiB, or "0B" for no limit, got %s`, a.MaxMemory))
	}
	v.duration("app.check_interval", a.CheckInterval, 100*time.Millisecond, 0)
	v.duration("app.restart_hold", a.RestartHold, 0, 0)
	c.validatePool(v)
}

// validatePool checks the worker pool keys: several workers need an
// address each, so the command must carry {port} or {socket}.
func (c *Config) validatePool(v *validator) {
	a := c.App
	switch {
	case a.Workers == WorkersAuto:
	case a.Workers < 1 || a.Workers > maxWorkers:
		v.fail("app.workers", errWorkersRange(int(a.Workers)))
	}
	if (a.Workers > 1 || a.Workers == WorkersAuto) && len(a.Command) > 0 && !HasPlaceholder(a.Command) {
		v.fail("app.workers", errors.New(`several workers need an address each: write "--port {port}" or "--uds {socket}" in app.command`))
	}
	if a.Workers == WorkersAuto && a.MaxMemory <= 0 && len(a.Command) > 0 {
		v.fail("app.workers", errors.New(`"auto" divides the memory budget by app.max_memory, which is 0: set app.max_memory or a number of workers`))
	}
	if a.MaxRequests < 0 {
		v.fail("app.max_requests", fmt.Errorf("must be 0 (never) or more, got %d", a.MaxRequests))
	}
	if a.MaxRequestsJitter < 0 {
		v.fail("app.max_requests_jitter", fmt.Errorf("must be 0 or more, got %d", a.MaxRequestsJitter))
	}
	v.duration("app.max_lifetime", a.MaxLifetime, 0, 0)
	v.duration("app.request_timeout", a.RequestTimeout, 0, 0)
}

func (c *Config) validateMemory(v *validator) {
	m := c.Memory
	if m.Limit != DefaultMemoryLimit {
		b, err := ParseByteSize(m.Limit)
		switch {
		case err != nil:
			v.fail("memory.limit", fmt.Errorf(`must be "auto" or a size such as "96MiB": %w`, err))
		case b < 16*MiB:
			v.fail("memory.limit", fmt.Errorf(`must be "auto" or at least 16MiB, got %s`, b))
		}
	}
	v.duration("memory.release_interval", m.ReleaseInterval, 0, 0)
}

func (c *Config) validateAdmin(v *validator) {
	a := c.Admin
	if a.Listen == "" {
		return
	}
	host, port, ok := v.listenAddr("admin.listen", a.Listen)
	if !ok {
		return
	}
	if !isLoopback(host) && a.Token == "" {
		v.fail("admin.listen", fmt.Errorf("%q is reachable from other machines: set admin.token or bind admin to 127.0.0.1", a.Listen))
	}
	admin := boundAddr{host, port}
	for _, key := range []string{"listen.https", "listen.http"} {
		addr := c.Listen.HTTPS
		if key == "listen.http" {
			addr = c.Listen.HTTP
		}
		if h, p, err := splitPort(addr); err == nil && clash(admin, boundAddr{h, p}) {
			v.fail("admin.listen", fmt.Errorf("must differ from %s (%q)", key, addr))
		}
	}
}

func splitPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	return h, n, err
}

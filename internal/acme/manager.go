package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/caddyserver/certmagic"
)

// Challenge types Options.Challenges may list.
const (
	HTTP01    = "http-01"
	TLSALPN01 = "tls-alpn-01"
)

// CA directories used when Options.CA is empty.
const (
	LetsEncryptProduction = certmagic.LetsEncryptProductionCA
	LetsEncryptStaging    = certmagic.LetsEncryptStagingCA
)

// StorageDirName is the storage directory's name under Bulwark's state
// directory when Options.Storage is not given by the operator.
const StorageDirName = "acme"

// Options configures a Manager.
type Options struct {
	// Domains are the names certificates are obtained for, one
	// certificate each. Required.
	Domains []string
	// Email is the ACME account's contact address; "" = none.
	Email string
	// CA is the ACME directory URL. If empty, Let's Encrypt production is
	// used, or its staging directory when Staging is set.
	CA      string
	Staging bool
	// CARoot is a PEM file of certificates trusted for the CA's own TLS
	// (a private or test CA) instead of the system roots; "" = system.
	CARoot string
	// Challenges are the challenge types offered; nil = both HTTP01 and
	// TLSALPN01. HTTP01 is dropped when Start is given no plain listener.
	Challenges []string
	// Storage is the directory certificates, account keys, challenge data
	// and locks are kept in (created with mode 0700). Required unless
	// Store is set.
	Storage string
	// Store, when set, replaces the file storage in Storage: any
	// certmagic.Storage (Redis, Consul, S3...) shared by instances.
	Store certmagic.Storage
	// RenewCheckInterval is how often certificates are checked for
	// renewal; zero = the engine's default (10 minutes).
	RenewCheckInterval time.Duration
	// Logger receives the engine's lines and the outcome of each order.
	// If nil, nothing is logged.
	Logger *slog.Logger
	// Metrics is where bulwark_cert_expiry_seconds is registered. If nil,
	// a private set is used.
	Metrics *metrics.Set
}

// Manager obtains, renews and serves the certificates of Options.Domains.
// It is safe for concurrent use.
type Manager struct {
	opts   Options
	log    *slog.Logger
	roots  *x509.CertPool // nil: system roots
	names  map[string]bool
	status *statusBook

	// Set once by Start; nil before.
	cfg   atomic.Pointer[certmagic.Config]
	iss   atomic.Pointer[certmagic.ACMEIssuer]
	cache atomic.Pointer[certmagic.Cache]
	holds atomic.Pointer[holdBook]

	startOnce sync.Once
}

// New checks o and reads the CA root, without the network or creating
// anything; Start begins the work.
func New(o Options) (*Manager, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Challenges == nil {
		o.Challenges = []string{HTTP01, TLSALPN01}
	}
	o.Domains = slices.Clone(o.Domains)
	var errs []error
	if len(o.Domains) == 0 {
		errs = append(errs, errors.New("no domains to obtain certificates for"))
	}
	if len(o.Challenges) == 0 {
		errs = append(errs, errors.New("no challenge types"))
	}
	for _, c := range o.Challenges {
		if c != HTTP01 && c != TLSALPN01 {
			errs = append(errs, fmt.Errorf("unsupported challenge type %q: want %q or %q", c, HTTP01, TLSALPN01))
		}
	}
	if o.Storage == "" && o.Store == nil {
		errs = append(errs, errors.New("no storage directory"))
	}
	m := &Manager{opts: o, log: o.Logger, names: make(map[string]bool)}
	for _, d := range o.Domains {
		m.names[normalize(d)] = true
	}
	if o.CARoot != "" {
		pool, err := readRoots(o.CARoot)
		if err != nil {
			errs = append(errs, fmt.Errorf("ca_root: %w", err))
		}
		m.roots = pool
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m.status = newStatusBook(o.Domains, m.expiry, o.Metrics, o.Logger)
	return m, nil
}

// CheckCARoot reports why path cannot serve as Options.CARoot: it must be
// a readable PEM bundle holding at least one certificate.
func CheckCARoot(path string) error {
	_, err := readRoots(path)
	return err
}

// readRoots reads a PEM bundle that must hold at least one certificate.
func readRoots(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%q: no PEM certificate in the file", path)
	}
	return pool, nil
}

// CA is the ACME directory in use.
func (m *Manager) CA() string {
	switch {
	case m.opts.CA != "":
		return m.opts.CA
	case m.opts.Staging:
		return LetsEncryptStaging
	}
	return LetsEncryptProduction
}

// Start begins managing the names: certificates in storage are loaded,
// missing or expiring ones are ordered in the background, and renewals
// are checked until ctx ends. httpsAddr and httpAddr are the bound
// listeners' addresses, where the CA's validation arrives (for
// tls-alpn-01 and http-01); httpAddr "" means no plain listener, so no
// http-01. Call it once, after the listeners are bound.
func (m *Manager) Start(ctx context.Context, httpsAddr, httpAddr string) error {
	err := errors.New("acme: Start called twice")
	m.startOnce.Do(func() { err = m.start(ctx, httpsAddr, httpAddr) })
	return err
}

func (m *Manager) start(ctx context.Context, httpsAddr, httpAddr string) error {
	storage := m.opts.Store
	if storage == nil {
		if err := os.MkdirAll(m.opts.Storage, 0o700); err != nil {
			return fmt.Errorf("acme storage: %w", err)
		}
		if fi, err := os.Stat(m.opts.Storage); err == nil && fi.Mode().Perm()&0o077 != 0 {
			m.log.Warn("acme storage directory is readable by others; it holds private keys: chmod 700 it",
				"dir", m.opts.Storage, "mode", fi.Mode().Perm().String())
		}
		storage = &certmagic.FileStorage{Path: m.opts.Storage}
	}
	zl := zapToSlog(m.log)
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			return m.cfg.Load(), nil
		},
		RenewCheckInterval: m.opts.RenewCheckInterval,
		Logger:             zl,
	})
	cfg := certmagic.New(cache, certmagic.Config{
		Storage:        storage,
		Logger:         zl,
		OnEvent:        m.onEvent,
		ShouldEmitFunc: wantEvent,
	})
	host, httpsPort, err := splitAddr(httpsAddr)
	if err != nil {
		cache.Stop()
		return fmt.Errorf("acme: https listener: %w", err)
	}
	tmpl := certmagic.ACMEIssuer{
		CA:     m.CA(),
		Email:  m.opts.Email,
		Agreed: true, // configuring [acme] is agreeing to the CA's terms (README)
		// Challenges are answered by Bulwark's listeners: the engine only
		// ever finds these ports taken, by us, and leaves them to us.
		ListenHost:              host,
		AltTLSALPNPort:          httpsPort,
		DisableTLSALPNChallenge: !slices.Contains(m.opts.Challenges, TLSALPN01),
		DisableHTTPChallenge:    httpAddr == "" || !slices.Contains(m.opts.Challenges, HTTP01),
		TrustedRoots:            m.roots,
		Logger:                  zl,
	}
	if httpAddr != "" {
		httpHost, httpPort, err := splitAddr(httpAddr)
		if err != nil {
			cache.Stop()
			return fmt.Errorf("acme: http listener: %w", err)
		}
		tmpl.AltHTTPPort = httpPort
		if httpHost != host {
			// One ListenHost serves both: the wildcard collides with
			// either listener, which the engine takes as ours.
			tmpl.ListenHost = ""
		}
	}
	if tmpl.DisableHTTPChallenge && tmpl.DisableTLSALPNChallenge {
		cache.Stop()
		return errors.New("acme: no challenge can be solved: http-01 needs listen.http")
	}
	iss := certmagic.NewACMEIssuer(cfg, tmpl)
	cfg.Issuers = []certmagic.Issuer{iss}
	holds := newHoldBook(storage, iss.IssuerKey(), m.log)
	for _, d := range m.opts.Domains {
		holds.active(ctx, d) // for Status: holds left by an earlier process
	}
	m.holds.Store(holds)
	m.cfg.Store(cfg)
	m.iss.Store(iss)
	m.cache.Store(cache)
	go func() {
		<-ctx.Done()
		cache.Stop()
	}()
	m.log.Info("acme: managing certificates", "domains", m.opts.Domains, "ca", tmpl.CA,
		"http-01", !tmpl.DisableHTTPChallenge, "tls-alpn-01", !tmpl.DisableTLSALPNChallenge, "storage", m.storageName())
	if err := cfg.ManageAsync(ctx, m.opts.Domains); err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	return nil
}

func (m *Manager) storageName() string {
	if m.opts.Store != nil {
		return fmt.Sprintf("%T", m.opts.Store)
	}
	return m.opts.Storage
}

// splitAddr splits a listener address; the host is "" for a wildcard.
func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 {
		return "", 0, fmt.Errorf("address %q has no port", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	return host, port, nil
}

// wantEvent keeps the engine from building event data for every
// handshake: only certificate outcomes are recorded.
func wantEvent(event string) bool { return strings.HasPrefix(event, "cert_") }

// Manages reports whether name (any case, trailing dot allowed) is one of
// the managed domains.
func (m *Manager) Manages(name string) bool { return m.names[normalize(name)] }

// GetCertificate answers a handshake for a managed name, or a tls-alpn-01
// challenge (a ClientHello offering only acme-tls/1). It fails when the
// name has no certificate yet, or before Start; the caller then serves
// its fallback.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cfg := m.cfg.Load()
	if cfg == nil {
		return nil, errors.New("acme: not started")
	}
	return cfg.GetCertificate(hello)
}

// HTTPHandler answers http-01 challenges (GET /.well-known/acme-challenge/
// for a token this instance or one sharing its storage is solving) and
// passes every other request to next.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if iss := m.iss.Load(); iss != nil && certmagic.LooksLikeHTTPChallenge(r) && iss.HandleHTTPChallenge(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// expiry is the latest NotAfter among the cached certificates for name;
// zero when there is none.
func (m *Manager) expiry(name string) (notBefore, notAfter time.Time) {
	cache := m.cache.Load()
	if cache == nil {
		return
	}
	for _, c := range cache.AllMatchingCertificates(name) {
		if c.Leaf != nil && c.Leaf.NotAfter.After(notAfter) {
			notBefore, notAfter = c.Leaf.NotBefore, c.Leaf.NotAfter
		}
	}
	return
}

func normalize(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

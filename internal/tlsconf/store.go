package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Defaults applied to zero Options fields.
const (
	// DefaultMinVersion is used when Options.MinVersion is zero.
	DefaultMinVersion = tls.VersionTLS12
	// DefaultTicketRotation is used when Options.TicketRotation is zero.
	DefaultTicketRotation = 24 * time.Hour
	// DefaultExpiryWarning is used when Options.ExpiryWarning is zero.
	DefaultExpiryWarning = 14 * 24 * time.Hour
)

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange with an
// AEAD cipher only. TLS 1.3 suites are not configurable in Go and are all
// AEAD. Go picks among these by its own preference order (AES-GCM when the
// CPU has AES instructions, else ChaCha20-Poly1305).
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// nextProtos is the ALPN list: HTTP/2 preferred, HTTP/1.1 otherwise.
var nextProtos = []string{"h2", "http/1.1"}

// Pair names a certificate file (PEM: the leaf first, then any
// intermediates) and its private key file (PEM: PKCS #8, PKCS #1 or SEC 1,
// unencrypted).
type Pair struct {
	CertFile string
	KeyFile  string
}

// Options configures a Store.
type Options struct {
	// Pairs are the certificates served. The first is served to clients that
	// send no SNI or a name no certificate covers. If empty, the development
	// certificate from EnsureDevCert(DevCertDir) is used.
	Pairs []Pair
	// DevCertDir is where the development certificate is kept. If empty,
	// $XDG_STATE_HOME/bulwark is used, else $HOME/.local/state/bulwark.
	// It is only used when Pairs is empty.
	DevCertDir string
	// MinVersion is the lowest TLS version accepted: tls.VersionTLS12 or
	// tls.VersionTLS13. If zero, DefaultMinVersion (TLS 1.2) is used.
	MinVersion uint16
	// SessionTickets turns TLS session tickets (resumption) on. If false,
	// tickets are off.
	SessionTickets bool
	// TicketKeyFile, if set, is the file the ticket keys are read from (the
	// format is in the package doc); it is re-read every minute and when it
	// changes. If empty, keys are generated in memory and rotated every
	// TicketRotation, keeping the previous key.
	TicketKeyFile string
	// TicketRotation is how often in-memory ticket keys rotate. If zero,
	// DefaultTicketRotation is used. Ignored when TicketKeyFile is set.
	TicketRotation time.Duration
	// ExpiryWarning is how long before a certificate's expiry a warning is
	// logged at each load (and daily while Run runs). If zero,
	// DefaultExpiryWarning is used; negative turns the warning off.
	ExpiryWarning time.Duration
	// Logger receives load, expiry and watcher messages. If nil, nothing is
	// logged.
	Logger *slog.Logger
	// Metrics is where the bulwark_tls_* metrics are registered. If nil, a
	// private set is used.
	Metrics *metrics.Set
	// Now is the clock used to judge certificate validity and expiry. If
	// nil, time.Now is used.
	Now func() time.Time
	// Managed, when set, serves the names it manages that no certificate
	// file covers (ACME), and answers tls-alpn-01 challenges: the ALPN list
	// then offers acme-tls/1 too.
	Managed Managed
}

// Managed is a source of certificates besides the files: internal/acme.
type Managed interface {
	// Manages reports whether it serves name (lower case, no trailing dot).
	Manages(name string) bool
	// GetCertificate answers a handshake for a name it manages, or a
	// tls-alpn-01 challenge. An error makes the handshake fall back to the
	// files' default certificate.
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// acmeTLS1 is the ALPN protocol of the tls-alpn-01 challenge (RFC 8737).
const acmeTLS1 = "acme-tls/1"

// alpn is the ALPN list for o: acme-tls/1 last, only with a Managed source,
// so that a browser never negotiates it.
func alpn(o Options) []string {
	if o.Managed == nil {
		return nextProtos
	}
	return append(slices.Clip(nextProtos), acmeTLS1)
}

func (o Options) withDefaults() Options {
	if o.DevCertDir == "" {
		o.DevCertDir = defaultDevCertDir()
	}
	if o.MinVersion == 0 {
		o.MinVersion = DefaultMinVersion
	}
	if o.TicketRotation == 0 {
		o.TicketRotation = DefaultTicketRotation
	}
	if o.ExpiryWarning == 0 {
		o.ExpiryWarning = DefaultExpiryWarning
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Pairs = slices.Clone(o.Pairs)
	return o
}

// validate checks the options that are not files.
func (o Options) validate() error {
	var errs []error
	if o.MinVersion != tls.VersionTLS12 && o.MinVersion != tls.VersionTLS13 {
		errs = append(errs, fmt.Errorf("unsupported minimum TLS version %#04x: want TLS 1.2 or 1.3", o.MinVersion))
	}
	if o.TicketRotation < 0 {
		errs = append(errs, fmt.Errorf("ticket rotation %v is negative", o.TicketRotation))
	}
	for i, p := range o.Pairs {
		if p.CertFile == "" || p.KeyFile == "" {
			errs = append(errs, fmt.Errorf("certificate pair %d: both a certificate file and a key file are needed", i+1))
		}
	}
	return errors.Join(errs...)
}

// StateDir returns Bulwark's state directory: dir when set (tls.cert_dir),
// else the default directory of the development certificate. Other state
// that must survive restarts, such as the generated admin token, is kept
// there too, so one directory holds everything a user must back up or
// protect.
func StateDir(dir string) string {
	if dir != "" {
		return dir
	}
	return defaultDevCertDir()
}

// defaultDevCertDir is $XDG_STATE_HOME/bulwark, else
// $HOME/.local/state/bulwark, else "" (EnsureDevCert then fails).
func defaultDevCertDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "bulwark")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "bulwark")
	}
	return ""
}

// ParseMinVersion turns "1.2" or "1.3" into tls.VersionTLS12 or
// tls.VersionTLS13.
func ParseMinVersion(s string) (uint16, error) {
	switch strings.TrimSpace(s) {
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unsupported TLS version %q: want \"1.2\" or \"1.3\"", s)
}

// CertInfo describes one loaded certificate.
type CertInfo struct {
	// Names are the DNS and IP names the certificate covers.
	Names []string
	// NotAfter is when it expires.
	NotAfter time.Time
	// File is the certificate file it was loaded from.
	File string
	// KeyType is "ECDSA", "RSA" or "Ed25519".
	KeyType string
}

// Store holds the certificates and ticket keys being served. It is safe for
// concurrent use: handshakes read an atomically swapped snapshot without
// locking, while Reload, Update, key rotation and the watcher serialize on a
// mutex.
type Store struct {
	log      *slog.Logger
	set      *metrics.Set
	now      func() time.Time
	reloads  *metrics.Counter
	failures *metrics.Counter
	base     *tls.Config

	cur     atomic.Pointer[snapshot]
	changed chan struct{} // cap 1; Update tells Run to re-sync its watches
	checks  atomic.Int64  // file checks done by Run, for tests
	settle  time.Duration // settleTime; shorter in tests

	mu      sync.Mutex
	opts    Options               // guarded by mu; with defaults
	memKeys [][TicketKeySize]byte // guarded by mu; in-memory ticket keys
	gauges  map[string]time.Time  // guarded by mu; expiry gauge label → NotAfter
}

// snapshot is one complete, validated set of certificates and the
// per-handshake config built from it. It is never modified once installed,
// except for its ticket keys (tls.Config.SetSessionTicketKeys is safe).
type snapshot struct {
	opts      Options
	pairs     []Pair // resolved: the dev pair when Options.Pairs is empty
	certs     []*loadedCert
	byName    map[string][]*loadedCert
	fallback  []*loadedCert
	cfg       *tls.Config
	fileKeys  [][TicketKeySize]byte // from TicketKeyFile, if set
	ticketSum [sha256.Size]byte
}

// New loads and validates every pair (and the ticket key file, if set). The
// error lists every problem found; each names its file.
func New(o Options) (*Store, error) {
	o = o.withDefaults()
	s := &Store{
		log:      o.Logger,
		set:      o.Metrics,
		now:      o.Now,
		reloads:  o.Metrics.GetOrCreateCounter("bulwark_tls_reloads_total"),
		failures: o.Metrics.GetOrCreateCounter("bulwark_tls_reload_failures_total"),
		changed:  make(chan struct{}, 1),
		settle:   settleTime,
		gauges:   make(map[string]time.Time),
		opts:     o,
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	snap, err := s.build(o)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.installLocked(snap)
	s.mu.Unlock()

	// The outer config is what listeners hold. Every handshake goes through
	// GetConfigForClient, so the snapshot's config (min version, tickets,
	// certificates) decides; the outer fields mirror the initial options
	// for callers that inspect them. Renegotiation needs no setting: Go
	// servers never renegotiate, and refuse a client's attempt. Curve
	// preferences are left to Go's defaults (X25519 first).
	s.base = &tls.Config{
		MinVersion:             o.MinVersion,
		CipherSuites:           cipherSuites,
		NextProtos:             alpn(o),
		SessionTicketsDisabled: !o.SessionTickets,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().cfg, nil
		},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load().getCertificate(hello)
		},
	}
	return s, nil
}

// TLSConfig returns the config to serve with. It is built once; certificate
// reloads and Update reach it through GetConfigForClient. Callers must not
// modify it (Clone it for a variant).
func (s *Store) TLSConfig() *tls.Config { return s.base }

// Reload re-reads every certificate, key and ticket key file. On any error
// the current set keeps being served and the error is returned (the caller
// logs it); bulwark_tls_reload_failures_total counts it.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked(s.opts)
}

// Update applies new options, typically from a config reload: pairs,
// minimum version, tickets, the ticket key file and rotation, the expiry
// warning. Logger, Metrics and Now are kept from New. On any error nothing
// changes and the error is returned.
func (s *Store) Update(o Options) error {
	o.Logger, o.Metrics, o.Now = s.log, s.set, s.now
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		s.failures.Inc()
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(o); err != nil {
		return err
	}
	s.opts = o
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

func (s *Store) reloadLocked(o Options) error {
	snap, err := s.build(o)
	if err != nil {
		s.failures.Inc()
		return err
	}
	s.installLocked(snap)
	s.reloads.Inc()
	return nil
}

// Expiries describes the certificates being served, in configured order.
func (s *Store) Expiries() []CertInfo {
	snap := s.cur.Load()
	out := make([]CertInfo, 0, len(snap.certs))
	for _, c := range snap.certs {
		out = append(out, CertInfo{
			Names:    slices.Clone(c.names),
			NotAfter: c.cert.Leaf.NotAfter,
			File:     c.pair.CertFile,
			KeyType:  c.keyType,
		})
	}
	return out
}

// build loads everything o names into a snapshot, without installing it.
func (s *Store) build(o Options) (*snapshot, error) {
	now := s.now()
	pairs := o.Pairs
	if len(pairs) == 0 {
		p, err := EnsureDevCert(o.DevCertDir, now)
		if err != nil {
			return nil, fmt.Errorf("preparing the development certificate: %w", err)
		}
		pairs = []Pair{p}
	}
	snap := &snapshot{opts: o, pairs: pairs}
	var errs []error
	for _, p := range pairs {
		c, err := loadPair(p, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		snap.certs = append(snap.certs, c)
	}
	if o.SessionTickets && o.TicketKeyFile != "" {
		data, err := readFile("ticket key", o.TicketKeyFile)
		if err == nil {
			snap.fileKeys, err = parseTicketKeys(data)
			if err != nil {
				err = &FileError{Kind: "ticket key", Path: o.TicketKeyFile, Err: err}
			}
			snap.ticketSum = sha256.Sum256(data)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	snap.index()
	snap.cfg = &tls.Config{
		MinVersion:             o.MinVersion,
		CipherSuites:           cipherSuites,
		NextProtos:             alpn(o),
		GetCertificate:         snap.getCertificate,
		SessionTicketsDisabled: !o.SessionTickets,
	}
	return snap, nil
}

// installLocked makes snap the served set: ticket keys, then the atomic
// swap, then metrics and log lines.
func (s *Store) installLocked(snap *snapshot) {
	if snap.opts.SessionTickets {
		keys := snap.fileKeys
		if snap.opts.TicketKeyFile == "" {
			if len(s.memKeys) == 0 {
				s.memKeys = rotateKeys(nil)
			}
			keys = s.memKeys
		}
		snap.cfg.SetSessionTicketKeys(keys)
	}
	s.cur.Store(snap)
	s.updateGaugesLocked(snap)
	for _, c := range snap.certs {
		s.logExpiry(c, snap.opts.ExpiryWarning, true)
	}
}

// logExpiry logs a certificate's expiry: at info when loaded is set, and a
// warning when it expires within warn.
func (s *Store) logExpiry(c *loadedCert, warn time.Duration, loaded bool) {
	left := c.cert.Leaf.NotAfter.Sub(s.now())
	attrs := []any{
		"file", c.pair.CertFile, "names", c.names, "key_type", c.keyType,
		"not_after", c.cert.Leaf.NotAfter.UTC(), "expires_in", left.Round(time.Hour).String(),
	}
	if loaded {
		s.log.Info("tls certificate loaded", attrs...)
	}
	if warn > 0 && left < warn {
		s.log.Warn("tls certificate expires soon", attrs...)
	}
}

// updateGaugesLocked keeps one bulwark_tls_cert_expiry_seconds series per
// certificate's first name (the soonest expiry when an ECDSA and an RSA
// certificate share it), removing series of certificates no longer served.
func (s *Store) updateGaugesLocked(snap *snapshot) {
	want := make(map[string]time.Time)
	for _, c := range snap.certs {
		label := c.pair.CertFile
		if len(c.names) > 0 {
			label = c.names[0]
		}
		if t, ok := want[label]; !ok || c.cert.Leaf.NotAfter.Before(t) {
			want[label] = c.cert.Leaf.NotAfter
		}
	}
	for label, t := range s.gauges {
		if w, ok := want[label]; !ok || !w.Equal(t) {
			s.set.UnregisterMetric(expiryMetric(label))
			delete(s.gauges, label)
		}
	}
	now := s.now
	for label, notAfter := range want {
		if _, ok := s.gauges[label]; ok {
			continue
		}
		name := expiryMetric(label)
		// Another Store on the same set (one rebuilt on reload) may have
		// registered this series with its own callback: replace it.
		s.set.UnregisterMetric(name)
		s.set.GetOrCreateGauge(name, func() float64 { return notAfter.Sub(now()).Seconds() })
		s.gauges[label] = notAfter
	}
}

func expiryMetric(label string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `bulwark_tls_cert_expiry_seconds{name="` + r.Replace(label) + `"}`
}

// rotateTicketKeys prepends a fresh in-memory ticket key and drops the
// oldest beyond the previous one. It does nothing when tickets are off or
// come from a file.
func (s *Store) rotateTicketKeys() {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.cur.Load()
	if !snap.opts.SessionTickets || snap.opts.TicketKeyFile != "" {
		return
	}
	s.memKeys = rotateKeys(s.memKeys)
	snap.cfg.SetSessionTicketKeys(s.memKeys)
	s.log.Debug("tls session ticket keys rotated")
}

// keyTypeRank orders certificates for one name: ECDSA first (smaller,
// faster), then RSA for clients that lack ECDSA, then Ed25519.
func keyTypeRank(t string) int {
	switch t {
	case "ECDSA":
		return 0
	case "RSA":
		return 1
	default:
		return 2
	}
}

// index builds the name lookup: for every name, the certificates covering
// it, ECDSA before RSA, configured order otherwise.
func (sn *snapshot) index() {
	sn.byName = make(map[string][]*loadedCert)
	for _, c := range sn.certs {
		for _, n := range c.names {
			if !slices.Contains(sn.byName[n], c) {
				sn.byName[n] = append(sn.byName[n], c)
			}
		}
	}
	for _, list := range sn.byName {
		slices.SortStableFunc(list, func(a, b *loadedCert) int {
			return keyTypeRank(a.keyType) - keyTypeRank(b.keyType)
		})
	}
	first := sn.certs[0]
	sn.fallback = []*loadedCert{first}
	if len(first.names) > 0 {
		sn.fallback = sn.byName[first.names[0]]
	}
}

// getCertificate picks the certificate for a handshake: by exact server
// name, then by a wildcard one label deep; then, for a name no file covers,
// the Managed source's; else the first pair's. Among a name's file
// certificates, the first the client supports.
func (sn *snapshot) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	cands := sn.match(name)
	if m := sn.opts.Managed; m != nil {
		// A tls-alpn-01 validation offers acme-tls/1 alone (RFC 8737 §3),
		// and only for a name this side manages: any other such hello is
		// refused here, before the engine looks in its storage and logs.
		if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeTLS1 {
			if !m.Manages(name) {
				return nil, fmt.Errorf("no tls-alpn-01 challenge for %q", name)
			}
			return m.GetCertificate(hello)
		}
		if len(cands) == 0 && m.Manages(name) {
			if c, err := m.GetCertificate(hello); err == nil && c != nil {
				return c, nil
			}
		}
	}
	if len(cands) == 0 {
		cands = sn.fallback
	}
	for _, c := range cands {
		if hello.SupportsCertificate(c.cert) == nil {
			return c.cert, nil
		}
	}
	// None fits: send the preferred one and let the client judge, as
	// crypto/tls does with Config.Certificates.
	return cands[0].cert, nil
}

// match returns the file certificates covering name, exactly or by a
// wildcard one label deep; nil when none does.
func (sn *snapshot) match(name string) []*loadedCert {
	if name == "" {
		return nil
	}
	if c := sn.byName[name]; len(c) > 0 {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := sn.byName["*"+name[i:]]; len(c) > 0 {
			return c
		}
	}
	return nil
}

package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// Problems a certificate or key file can have. They are wrapped in a
// *FileError that names the file; test with errors.Is.
var (
	ErrNotPEM         = errors.New("not a PEM file")
	ErrNoCertificates = errors.New("no certificates in file")
	ErrNoKey          = errors.New("no private key in file")
	ErrKeyMismatch    = errors.New("private key does not match the certificate")
	ErrExpired        = errors.New("expired")
	ErrNotYetValid    = errors.New("not yet valid")
)

// FileError reports a problem with one file. Its message names the file and
// what is wrong with it, for example
// `certificate file "/etc/bulwark/cert.pem": expired on 2026-01-02 10:00:00 UTC`.
type FileError struct {
	// Kind says what the file was expected to hold: "certificate",
	// "key" or "ticket key".
	Kind string
	// Path is the file as configured.
	Path string
	// Err is the problem.
	Err error
}

// Error names the file and says what is wrong with it.
func (e *FileError) Error() string {
	return fmt.Sprintf("%s file %q: %v", e.Kind, e.Path, e.Err)
}

// Unwrap returns the problem, for errors.Is.
func (e *FileError) Unwrap() error { return e.Err }

// maxFileSize bounds how much of a certificate, key or ticket key file is
// read; real ones are a few kilobytes.
const maxFileSize = 1 << 20

// readFile reads path, returning a *FileError of the given kind on failure.
func readFile(kind, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FileError{Kind: kind, Path: path, Err: fmt.Errorf("cannot open: %w", pathCause(err))}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &FileError{Kind: kind, Path: path, Err: fmt.Errorf("cannot read: %w", pathCause(err))}
	}
	if len(b) > maxFileSize {
		return nil, &FileError{Kind: kind, Path: path, Err: fmt.Errorf("larger than %d bytes", maxFileSize)}
	}
	return b, nil
}

// pathCause drops the operation and path that *fs.PathError repeats, since
// FileError already names the file; errors.Is(err, fs.ErrNotExist) still
// holds for the result.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// loadedCert is one validated pair.
type loadedCert struct {
	pair    Pair
	cert    *tls.Certificate // Leaf set
	names   []string         // DNS SANs (lower case) and IP SANs, in certificate order
	keyType string           // "ECDSA", "RSA" or "Ed25519"
	sum     [sha256.Size]byte
}

// loadPair reads, parses and validates one certificate/key pair as of now.
// It reports every problem of the pair at once (a missing certificate does
// not hide a missing key), each a *FileError naming its file.
func loadPair(p Pair, now time.Time) (*loadedCert, error) {
	certPEM, certErr := readFile("certificate", p.CertFile)
	keyPEM, keyErr := readFile("key", p.KeyFile)
	if certErr != nil || keyErr != nil {
		return nil, errors.Join(certErr, keyErr)
	}
	return parsePair(p, certPEM, keyPEM, now)
}

// ErrSwapped reports a certificate file that holds a private key while the
// key file holds a certificate.
var ErrSwapped = errors.New("the certificate and key files are swapped")

// parsePair validates the contents of a pair's files.
func parsePair(p Pair, certPEM, keyPEM []byte, now time.Time) (*loadedCert, error) {
	certErr := func(err error) error { return &FileError{Kind: "certificate", Path: p.CertFile, Err: err} }
	keyErr := func(err error) error { return &FileError{Kind: "key", Path: p.KeyFile, Err: err} }

	if hasBlock(certPEM, "PRIVATE KEY") && hasBlock(keyPEM, "CERTIFICATE") && !hasBlock(certPEM, "CERTIFICATE") {
		return nil, certErr(fmt.Errorf("%w: it holds a private key and the key file %q a certificate; exchange cert and key", ErrSwapped, p.KeyFile))
	}
	chain, cerr := parseCertificates(certPEM)
	if cerr == nil {
		cerr = checkValidity(chain[0], now)
	}
	if cerr != nil && hasBlock(certPEM, "PRIVATE KEY") {
		cerr = fmt.Errorf("%w: it holds a private key; the certificate belongs here", cerr)
	}
	key, kerr := parsePrivateKey(keyPEM)
	if kerr != nil && hasBlock(keyPEM, "CERTIFICATE") {
		kerr = fmt.Errorf("%w: it holds a certificate; the private key belongs here", kerr)
	}
	if cerr != nil || kerr != nil {
		var errs []error
		if cerr != nil {
			errs = append(errs, certErr(cerr))
		}
		if kerr != nil {
			errs = append(errs, keyErr(kerr))
		}
		return nil, errors.Join(errs...)
	}
	leaf := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, keyErr(fmt.Errorf("%w in %q", ErrKeyMismatch, p.CertFile))
	}
	kt, err := keyType(leaf)
	if err != nil {
		return nil, certErr(err)
	}
	der := make([][]byte, len(chain))
	for i, c := range chain {
		der[i] = c.Raw
	}
	lc := &loadedCert{
		pair:    p,
		cert:    &tls.Certificate{Certificate: der, PrivateKey: key, Leaf: leaf},
		names:   certNames(leaf),
		keyType: kt,
		sum:     pairSum(certPEM, keyPEM),
	}
	return lc, nil
}

// pairSum fingerprints a pair's file contents so the watcher can tell a
// real change from an unrelated event in the same directory.
func pairSum(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var s [sha256.Size]byte
	h.Sum(s[:0])
	return s
}

// hasBlock reports whether data holds a PEM block whose type ends in
// suffix ("PRIVATE KEY" matches "EC PRIVATE KEY" too).
func hasBlock(data []byte, suffix string) bool {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return false
		}
		if strings.HasSuffix(block.Type, suffix) {
			return true
		}
	}
}

// KeyModeWarning returns a warning when the file at path holds a private
// key and can be read by its group or by others, "" otherwise (also when it
// cannot be read: loading reports that). It looks at the contents, so that
// swapped cert and key files warn about the file that really is the key.
func KeyModeWarning(path string) string {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o044 == 0 {
		return ""
	}
	data, err := readFile("key", path)
	if err != nil || !hasBlock(data, "PRIVATE KEY") {
		return ""
	}
	return fmt.Sprintf("key file %q can be read by group or others (mode %04o): anyone in the group or on the machine can read the private key; chmod 600 it",
		path, fi.Mode().Perm())
}

// parseCertificates returns every CERTIFICATE block, leaf first.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	sawPEM := false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d in file: %w", len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	switch {
	case !sawPEM:
		return nil, ErrNotPEM
	case len(chain) == 0:
		return nil, ErrNoCertificates
	}
	return chain, nil
}

// checkValidity rejects a leaf that is expired or not yet valid at now.
// Intermediates are not checked: some deployed chains deliberately carry an
// expired cross-signature for old clients.
func checkValidity(leaf *x509.Certificate, now time.Time) error {
	const layout = "2006-01-02 15:04:05 UTC"
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("%w on %s", ErrExpired, leaf.NotAfter.UTC().Format(layout))
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("%w: valid from %s (clock now %s)", ErrNotYetValid,
			leaf.NotBefore.UTC().Format(layout), now.UTC().Format(layout))
	}
	return nil
}

// parsePrivateKey reads the first private key block (PKCS #8, PKCS #1 or
// SEC 1), skipping other blocks such as EC PARAMETERS.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	sawPEM := false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type == "CERTIFICATE" {
			continue
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if _, encrypted := block.Headers["DEK-Info"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the private key is encrypted; Bulwark needs it unencrypted (mode 0600)")
		}
		var key any
		var err error
		switch block.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
	}
	if !sawPEM {
		return nil, ErrNotPEM
	}
	return nil, ErrNoKey
}

func keyType(leaf *x509.Certificate) (string, error) {
	switch leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA", nil
	case *rsa.PublicKey:
		return "RSA", nil
	case ed25519.PublicKey:
		return "Ed25519", nil
	default:
		return "", fmt.Errorf("unsupported public key algorithm %v", leaf.PublicKeyAlgorithm)
	}
}

// certNames returns the names a certificate is served for: its DNS SANs in
// lower case and its IP SANs. A certificate without SANs falls back to its
// subject common name, as old self-made certificates have only that.
func certNames(leaf *x509.Certificate) []string {
	var names []string
	for _, n := range leaf.DNSNames {
		names = append(names, strings.ToLower(strings.TrimSuffix(n, ".")))
	}
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, strings.ToLower(leaf.Subject.CommonName))
	}
	return names
}

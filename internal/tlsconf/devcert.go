package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Development certificate parameters.
const (
	// DevCertFile and DevKeyFile are the file names EnsureDevCert uses in
	// its directory.
	DevCertFile = "dev-cert.pem"
	DevKeyFile  = "dev-key.pem"
	// DevCertValidity is how long a generated development certificate is
	// valid.
	DevCertValidity = 365 * 24 * time.Hour
	// DevCertRenewBefore is how close to expiry an existing development
	// certificate is replaced.
	DevCertRenewBefore = 30 * 24 * time.Hour
)

// devCertNames are the names the development certificate covers.
var devCertNames = []string{"localhost", "127.0.0.1", "::1"}

// EnsureDevCert returns the self-signed development certificate in dir
// (ECDSA P-256, for localhost, 127.0.0.1 and ::1), generating it when it is
// missing, unparsable, does not match its key, or expires within
// DevCertRenewBefore of now. It is generated once and kept: the key is
// written with mode 0600, and dir is created with mode 0700. Files are
// replaced by atomic renames, so a Store watching them never sees half a
// file.
func EnsureDevCert(dir string, now time.Time) (Pair, error) {
	if dir == "" {
		return Pair{}, errors.New("no directory for the development certificate: set $HOME or $XDG_STATE_HOME")
	}
	p := Pair{CertFile: filepath.Join(dir, DevCertFile), KeyFile: filepath.Join(dir, DevKeyFile)}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Pair{}, fmt.Errorf("creating the development certificate directory: %w", err)
	}
	// Two processes starting at once may interleave their renames and leave
	// one's key beside the other's certificate; checking again after
	// writing repairs that.
	for range 3 {
		if devCertUsable(p, now) {
			return p, nil
		}
		if err := writeDevCert(p, now); err != nil {
			return Pair{}, err
		}
	}
	if devCertUsable(p, now) {
		return p, nil
	}
	return Pair{}, fmt.Errorf("development certificate in %s keeps changing under us; is another process rewriting it?", dir)
}

// devCertUsable reports whether the pair on disk loads, covers the dev
// names and stays valid beyond DevCertRenewBefore.
func devCertUsable(p Pair, now time.Time) bool {
	c, err := loadPair(p, now)
	if err != nil {
		return false
	}
	if now.Add(DevCertRenewBefore).After(c.cert.Leaf.NotAfter) {
		return false
	}
	for _, n := range devCertNames {
		if !slices.Contains(c.names, n) {
			return false
		}
	}
	return true
}

// writeDevCert generates a new key and self-signed certificate and renames
// them into place, key first.
func writeDevCert(p Pair, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the development key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("generating a serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "localhost",
			Organization: []string{"Bulwark development certificate"},
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(DevCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("creating the development certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the development key: %w", err)
	}
	if err := writeFileAtomic(p.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(p.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFileAtomic writes data to a temporary file beside path and renames it
// over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

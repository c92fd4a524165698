package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CertKinds are the certificate kinds the benchmark generates: an ECDSA
// P-256 and an RSA-2048 pair, each self-signed for localhost, 127.0.0.1 and ::1.
var CertKinds = []string{"ecdsa", "rsa"}

// CertFiles are the files written for one kind of certificate.
type CertFiles struct {
	Cert, Key string // PEM certificate and PKCS#8 key
	Bundle    string // certificate then key in one file (HAProxy's crt)
}

// certFiles returns the paths of kind's files under dir.
func certFiles(dir, kind string) CertFiles {
	return CertFiles{
		Cert:   filepath.Join(dir, kind+".crt"),
		Key:    filepath.Join(dir, kind+".key"),
		Bundle: filepath.Join(dir, kind+".pem"),
	}
}

// GenerateCerts writes a fresh self-signed certificate of each kind into dir.
func GenerateCerts(dir string) (map[string]CertFiles, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cert dir: %w", err)
	}
	out := make(map[string]CertFiles)
	for _, kind := range CertKinds {
		var key crypto.Signer
		var err error
		switch kind {
		case "ecdsa":
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case "rsa":
			key, err = rsa.GenerateKey(rand.Reader, 2048)
		}
		if err != nil {
			return nil, fmt.Errorf("generating %s key: %w", kind, err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(time.Now().UnixNano()),
			Subject:               pkix.Name{CommonName: "localhost"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(30 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			DNSNames:              []string{"localhost"},
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return nil, fmt.Errorf("creating %s certificate: %w", kind, err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("encoding %s key: %w", kind, err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
		f := certFiles(dir, kind)
		for _, w := range []struct {
			path string
			data []byte
		}{
			{f.Cert, certPEM},
			{f.Key, keyPEM},
			{f.Bundle, append(append([]byte{}, certPEM...), keyPEM...)},
		} {
			if err := os.WriteFile(w.path, w.data, 0o600); err != nil {
				return nil, fmt.Errorf("writing %s: %w", kind, err)
			}
		}
		out[kind] = f
	}
	return out, nil
}

package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"

	"bulwark/internal/acme"
	"bulwark/internal/config"
	"bulwark/internal/observe"
	"bulwark/internal/tlsconf"
)

// acmeOptions turns [acme] into the manager's options; storage defaults to
// <state dir>/acme, beside the development certificate.
func (a *App) acmeOptions(cfg *config.Config) acme.Options {
	storage := cfg.Acme.Storage
	if storage == "" {
		if dir := tlsconf.StateDir(cfg.TLS.CertDir); dir != "" {
			storage = filepath.Join(dir, acme.StorageDirName)
		}
	}
	return acme.Options{
		Domains:    cfg.Acme.Domains,
		Email:      cfg.Acme.Email,
		CA:         cfg.Acme.CA,
		Staging:    cfg.Acme.Staging,
		CARoot:     cfg.Acme.CARoot,
		Challenges: cfg.Acme.Challenges,
		Storage:    storage,
		Logger:     a.log,
		Metrics:    a.set,
	}
}

// managed is the ACME manager as tlsconf's second source, nil without
// [acme] (an interface holding a nil *Manager would not be nil).
func (a *App) managed() tlsconf.Managed {
	if a.acme == nil {
		return nil
	}
	return a.acme
}

// acmeHTTP lets the plain listener answer http-01 challenges before its
// redirect to HTTPS.
func (a *App) acmeHTTP(h http.Handler) http.Handler {
	if a.acme == nil {
		return h
	}
	return a.acme.HTTPHandler(h)
}

// startACME begins obtaining and renewing certificates once the listeners
// the CA validates against are bound.
func (a *App) startACME(ctx context.Context, lns *listeners) error {
	if a.acme == nil {
		return nil
	}
	a.warnFileCovered()
	httpAddr := ""
	if lns.http != nil {
		httpAddr = lns.http.Addr().String()
	}
	if err := a.acme.Start(ctx, lns.https.Addr().String(), httpAddr); err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	return nil
}

// warnFileCovered says which [acme] domains a certificate file covers:
// the file is served for them, so their ACME certificates go unused.
func (a *App) warnFileCovered() {
	for _, d := range a.config().Acme.Domains {
		for _, c := range a.certs.Expiries() {
			if coversName(c.Names, d) {
				a.log.Warn("acme: a certificate file covers this domain and is served for it; drop one or the other",
					"name", d, "file", c.File)
				break
			}
		}
	}
}

// coversName reports whether names (a certificate's) cover name, exactly
// or by a wildcard one label deep.
func coversName(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
		if i := strings.IndexByte(name, '.'); i > 0 && n == "*"+name[i:] {
			return true
		}
	}
	return false
}

// certStatus is [acme]'s per-name state for /status.
func (a *App) certStatus() []observe.CertStatus {
	if a.acme == nil {
		return nil
	}
	var out []observe.CertStatus
	for _, s := range a.acme.Status() {
		out = append(out, observe.CertStatus{
			Name:        s.Name,
			NotAfter:    s.NotAfter,
			RenewAfter:  s.RenewAfter,
			LastAttempt: s.Attempt,
			NextAttempt: s.NextAttempt,
			LastRenewal: s.LastRenewal,
			LastError:   s.LastError,
			LastErrorAt: s.LastErrorAt,
		})
	}
	return out
}

// close closes every listener opened.
func (l *listeners) close() error {
	var errs []error
	for _, ln := range []net.Listener{l.https, l.http, l.admin} {
		if ln != nil {
			errs = append(errs, ln.Close())
		}
	}
	return errors.Join(errs...)
}

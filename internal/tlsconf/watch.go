package tlsconf

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher timing.
const (
	// WatchDebounce is how long Run waits after the last event in a
	// watched directory before re-reading the files, so that a renewal
	// writing several files is read once.
	WatchDebounce = 200 * time.Millisecond
	// PollInterval is how often Run re-reads the files even without events
	// (the ticket key file, file systems without inotify, dropped watches).
	PollInterval = time.Minute
	// maxDebounce bounds how long a stream of events can postpone a check.
	maxDebounce = 2 * time.Second
	// settleTime is how long files that changed but do not load (a renewal
	// halfway through: new certificate, old key) are given before the
	// failure is logged as a warning and counted. Until then Run retries
	// every retryInterval.
	settleTime    = 5 * time.Second
	retryInterval = time.Second
	// expiryCheckInterval is how often Run repeats the expiry warning.
	expiryCheckInterval = 24 * time.Hour
)

// Run watches the certificate, key and ticket key files and reloads them
// when their content changes (in-place writes and atomic renames alike;
// events are debounced by WatchDebounce), rotates in-memory ticket keys
// every Options.TicketRotation, and repeats the expiry warning daily. While
// changed files do not form a valid set — a renewal that has written the new
// certificate but not yet its key — the previous set keeps being served;
// the problem is logged as a warning and counted in
// bulwark_tls_reload_failures_total only if it lasts longer than a few
// seconds. Run returns nil when ctx is done; it never fails, falling back
// to polling every PollInterval when files cannot be watched.
func (s *Store) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	var werrs <-chan error
	if err != nil {
		s.log.Warn("cannot watch tls files; checking them every minute instead", "err", err)
		w = nil
	} else {
		defer w.Close()
		events, werrs = w.Events, w.Errors
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	relevant := s.syncWatches(w)
	// Files may have changed between New and now.
	var fail failStreak
	var firstEvent time.Time // first event of the current debounce
	armed := s.check(&fail)  // the timer is set, for a debounce or a retry
	if armed {
		firstEvent = time.Now()
		timer.Reset(retryInterval)
	}

	rotate := time.NewTicker(s.rotation())
	defer rotate.Stop()
	poll := time.NewTicker(PollInterval)
	defer poll.Stop()
	daily := time.NewTicker(expiryCheckInterval)
	defer daily.Stop()

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op == fsnotify.Chmod || !relevant(ev.Name) {
				continue
			}
			if !armed {
				armed, firstEvent = true, time.Now()
			}
			if time.Since(firstEvent) < maxDebounce {
				timer.Reset(WatchDebounce)
			}
		case err, ok := <-werrs:
			if !ok {
				werrs = nil
				continue
			}
			s.log.Warn("watching tls files", "err", err)
		case <-timer.C:
			armed = false
			if s.check(&fail) {
				armed, firstEvent = true, time.Now()
				timer.Reset(retryInterval)
			}
		case <-poll.C:
			s.check(&fail)
			relevant = s.syncWatches(w)
		case <-rotate.C:
			s.rotateTicketKeys()
		case <-daily.C:
			s.dailyCheck()
		case <-s.changed:
			relevant = s.syncWatches(w)
			rotate.Reset(s.rotation())
		}
	}
}

// failStreak tracks files that changed but do not load yet.
type failStreak struct {
	since    time.Time // zero when the files are fine
	reported bool      // warned and counted already
}

// check reloads the files if their content changed, and reports whether it
// should be retried soon (they changed but do not load, and the failure is
// not reported yet).
func (s *Store) check(fail *failStreak) (retry bool) {
	defer s.checks.Add(1)
	changed, err := s.reloadIfChanged()
	switch {
	case err == nil:
		if changed {
			s.log.Info("tls files changed; new certificates are served")
		}
		*fail = failStreak{}
		return false
	case fail.reported:
		s.log.Debug("tls files still do not load; serving the previous certificates", "err", err)
		return false
	case fail.since.IsZero():
		fail.since = time.Now()
		s.log.Info("tls files changed but do not load yet; serving the previous certificates", "err", err)
	}
	if time.Since(fail.since) >= s.settle {
		fail.reported = true
		s.failures.Inc()
		s.log.Warn("tls files changed but do not load; still serving the previous certificates", "err", err)
		return false
	}
	return true
}

// reloadIfChanged re-reads the current set's files and reloads when any
// differs from what is served. A failed reload is not counted here: Run
// decides when a failure is real.
func (s *Store) reloadIfChanged() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if unchanged(s.cur.Load()) {
		return false, nil
	}
	snap, err := s.build(s.opts)
	if err != nil {
		return true, err
	}
	s.installLocked(snap)
	s.reloads.Inc()
	return true, nil
}

// unchanged reports whether every file of snap still has the content it
// was loaded from.
func unchanged(snap *snapshot) bool {
	for i, p := range snap.pairs {
		certPEM, err1 := os.ReadFile(p.CertFile)
		keyPEM, err2 := os.ReadFile(p.KeyFile)
		if err1 != nil || err2 != nil || pairSum(certPEM, keyPEM) != snap.certs[i].sum {
			return false
		}
	}
	if snap.opts.SessionTickets && snap.opts.TicketKeyFile != "" {
		data, err := os.ReadFile(snap.opts.TicketKeyFile)
		if err != nil || sha256.Sum256(data) != snap.ticketSum {
			return false
		}
	}
	return true
}

func (s *Store) rotation() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.TicketRotation
}

// dailyCheck repeats expiry warnings and renews a development certificate
// that is about to expire (the next check then loads it).
func (s *Store) dailyCheck() {
	snap := s.cur.Load()
	for _, c := range snap.certs {
		s.logExpiry(c, snap.opts.ExpiryWarning, false)
	}
	if len(snap.opts.Pairs) == 0 {
		if _, err := EnsureDevCert(snap.opts.DevCertDir, s.now()); err != nil {
			s.log.Warn("renewing the development certificate", "err", err)
		}
	}
}

// watchedFiles returns the files of the current set, and the targets of
// those that are symbolic links (certbot's live/ directory links into
// archive/).
func (s *Store) watchedFiles() []string {
	snap := s.cur.Load()
	var files []string
	for _, p := range snap.pairs {
		files = append(files, p.CertFile, p.KeyFile)
	}
	if snap.opts.SessionTickets && snap.opts.TicketKeyFile != "" {
		files = append(files, snap.opts.TicketKeyFile)
	}
	for _, f := range files {
		if t, err := filepath.EvalSymlinks(f); err == nil && t != f {
			files = append(files, t)
		}
	}
	for i, f := range files {
		if a, err := filepath.Abs(f); err == nil {
			files[i] = a
		}
	}
	slices.Sort(files)
	return slices.Compact(files)
}

// syncWatches makes w watch exactly the directories of the current files
// and returns the filter for event names. Watching directories rather than
// files is what makes atomic renames visible.
func (s *Store) syncWatches(w *fsnotify.Watcher) func(string) bool {
	files := s.watchedFiles()
	dirs := make(map[string]bool)
	for _, f := range files {
		dirs[filepath.Dir(f)] = true
	}
	if w != nil {
		have := w.WatchList()
		for _, d := range have {
			if !dirs[d] {
				w.Remove(d) // an error means it is gone already
			}
		}
		for d := range dirs {
			if slices.Contains(have, d) {
				continue
			}
			if err := w.Add(d); err != nil {
				s.log.Warn("cannot watch tls directory; checking it every minute", "dir", d, "err", err)
			}
		}
	}
	return func(name string) bool {
		if a, err := filepath.Abs(name); err == nil {
			name = a
		}
		// Kubernetes secret volumes swap a "..data" symlink.
		return slices.Contains(files, name) || strings.HasPrefix(filepath.Base(name), "..")
	}
}

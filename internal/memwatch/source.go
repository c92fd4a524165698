package memwatch

import (
	"sync"
	"time"
)

// Source reads what watchers sample: the box's memory and the table of
// processes. The watchers of a pool share one, so that N workers cost one
// walk of /proc per tick rather than N: a walk younger than the caller's
// bound is handed out again, and only the few files of each tree are read
// per watcher. Its methods are safe for concurrent use.
type Source struct {
	box boxReader

	mu      sync.Mutex
	table   *Table        // guarded by mu; the last walk, nil before
	boxLast MachineSample // guarded by mu
	boxErr  error         // guarded by mu
	boxAt   time.Time     // guarded by mu; zero before the first read
}

// NewSource returns a Source reading under procRoot ("" means /proc) and
// cgroupRoot ("" means DefaultCgroupRoot). It finds Bulwark's cgroups
// now, once; their limits and usage are read at every Box.
func NewSource(procRoot, cgroupRoot string) *Source {
	return &Source{box: newBoxReader(procRoot, cgroupRoot)}
}

// Box returns the box's memory (see the function Box), read anew unless
// the last read is younger than maxAge.
func (s *Source) Box(now time.Time, maxAge time.Duration) (MachineSample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.boxAt.IsZero() || now.Sub(s.boxAt) >= maxAge || now.Before(s.boxAt) {
		s.boxLast, s.boxErr = s.box.read()
		s.boxAt = now
	}
	return s.boxLast, s.boxErr
}

// Table returns a walk of /proc younger than maxAge in which root runs,
// walking anew when there is none: a root started since the last walk is
// never reported gone.
func (s *Source) Table(now time.Time, maxAge time.Duration, root int) (*Table, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.table; t != nil && now.Sub(t.At) < maxAge && !now.Before(t.At) && t.Has(root) {
		return t, nil
	}
	t, err := readTable(s.box.procRoot, now)
	if err != nil {
		return nil, err
	}
	s.table = t
	return t, nil
}

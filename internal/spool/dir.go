package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The spool directory: where it is by default, what `check` says of it,
// the crash leftovers New removes, and the temp files bodies go to.

// DefaultDir reports the spool directory used when Options.Dir is empty: the
// "spool" directory under the first entry of $STATE_DIRECTORY (systemd's
// StateDirectory=, on disk), else /var/tmp/bulwark when it can be created and
// written (/var/tmp is on disk where /tmp is often tmpfs), else
// os.TempDir()+"/bulwark".
func DefaultDir() string {
	if sd := os.Getenv("STATE_DIRECTORY"); sd != "" {
		first, _, _ := strings.Cut(sd, ":")
		if first != "" {
			return filepath.Join(first, "spool")
		}
	}
	const varTmp = "/var/tmp/bulwark"
	if err := os.MkdirAll(varTmp, 0o700); err == nil && probeDir(varTmp) == nil {
		return varTmp
	}
	return filepath.Join(os.TempDir(), "bulwark")
}

// CheckDir reports problems with dir as a spool directory, for `bulwark
// check`: an error when it is missing, not a directory or not writable; a
// warning when it is on tmpfs (spooling there uses RAM). An empty dir means
// DefaultDir(), which is created (0700) as New would; a configured dir is
// not created. Otherwise CheckDir writes only a probe file it removes at
// once.
func CheckDir(dir string) (warnings []string, err error) {
	if dir == "" {
		dir = DefaultDir()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating default spool_dir: %w", err)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("spool_dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("spool_dir %q is not a directory", dir)
	}
	if err := probeDir(dir); err != nil {
		return nil, fmt.Errorf("spool_dir: %w", err)
	}
	if onTmpfs(dir) {
		warnings = append(warnings, fmt.Sprintf("spool_dir %q is tmpfs: spooling there uses RAM; set limits.spool_dir to a directory on disk", dir))
	}
	return warnings, nil
}

// probeDir checks that a file can be created, written and removed in dir.
func probeDir(dir string) error {
	f, err := os.CreateTemp(dir, ".bulwark-probe-*")
	if err != nil {
		return fmt.Errorf("spool dir %q is not writable: %w", dir, err)
	}
	name := f.Name()
	_, werr := f.Write([]byte{0})
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("spool dir %q is not writable: %w", dir, err)
	}
	return nil
}

// sweep removes regular files matching filePattern in dir and reports how
// many it removed. Files vanishing meanwhile (another instance unlinking its
// own) are not errors.
func sweep(dir string) (int, error) {
	names, err := filepath.Glob(filepath.Join(dir, filePattern))
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", dir, err)
	}
	n := 0
	var errs []error
	for _, name := range names {
		fi, err := os.Lstat(name)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// createTemp creates an exclusive 0600 temp file in the spool dir and
// unlinks it at once: the open file keeps its data, and nothing is left
// behind however the process ends.
func (s *Spool) createTemp() (*os.File, error) {
	f, err := os.CreateTemp(s.o().Dir, filePattern)
	if err != nil {
		return nil, fmt.Errorf("creating spool file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlinking spool file: %w", err)
	}
	return f, nil
}

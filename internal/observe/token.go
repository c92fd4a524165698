package observe

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is the name, in Bulwark's state directory, of the admin token
// generated when [admin] token is not set.
const TokenFile = "admin-token"

// tokenBytes is the entropy of a generated token: 256 bits.
const tokenBytes = 32

// EnsureToken returns the admin token kept in dir/TokenFile and the file's
// path, generating a random token on first use. The file is created with
// mode 0600 in a directory of mode 0700, so only the same user (and root)
// can read it; a file found with wider permissions is narrowed to 0600.
// Two processes starting at once agree on one token: the file is created
// by a hard link, which never replaces an existing file.
func EnsureToken(dir string) (token, path string, err error) {
	if dir == "" {
		return "", "", errors.New("no state directory for the admin token: set $HOME or $XDG_STATE_HOME, or [admin] token")
	}
	path = filepath.Join(dir, TokenFile)
	if tok, _, err := ReadToken(dir); err == nil {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return "", "", fmt.Errorf("narrowing the permissions of the admin token %s: %w", path, err)
			}
		}
		return tok, path, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("creating the state directory for the admin token: %w", err)
	}
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generating the admin token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	tmp, err := os.CreateTemp(dir, TokenFile+".*")
	if err != nil {
		return "", "", fmt.Errorf("writing the admin token: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 already; the write is followed by a
	// sync so a crash cannot leave an empty token file behind the link.
	_, werr := tmp.WriteString(tok + "\n")
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return "", "", fmt.Errorf("writing the admin token: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", "", fmt.Errorf("writing the admin token: %w", err)
	}
	// Another process may have won the race: the file on disk is the token.
	tok, _, err = ReadToken(dir)
	return tok, path, err
}

// ReadToken returns the admin token kept in dir/TokenFile and the file's
// path. An error wrapping fs.ErrNotExist means none was generated there;
// fs.ErrPermission means the file belongs to another user.
func ReadToken(dir string) (token, path string, err error) {
	if dir == "" {
		return "", "", fmt.Errorf("no state directory: %w", fs.ErrNotExist)
	}
	path = filepath.Join(dir, TokenFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", path, fmt.Errorf("reading the admin token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", path, fmt.Errorf("reading the admin token: %s is empty", path)
	}
	return tok, path, nil
}

package tlsconf

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTicketKeys(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, 32)
	k2 := bytes.Repeat([]byte{2}, 32)
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	tests := []struct {
		name    string
		in      []byte
		want    [][]byte
		wantErr string
	}{
		{"one raw key", k1, [][]byte{k1}, ""},
		{"two raw keys", append(append([]byte{}, k1...), k2...), [][]byte{k1, k2}, ""},
		{"raw, not a multiple of 32", bytes.Repeat([]byte{0xff}, 33), nil, "multiple of 32"},
		{"base64 lines with comment and blank", []byte("# current first\n" + b64(k1) + "\n\n" + b64(k2) + "\n"), [][]byte{k1, k2}, ""},
		{"base64 without padding, CRLF", []byte(strings.TrimRight(b64(k2), "=") + "\r\n"), [][]byte{k2}, ""},
		{"base64 line not base64", []byte(b64(k1) + "\nnot base64!\n"), nil, "line 2: not base64"},
		{"base64 key of wrong length", []byte(b64(k1[:16]) + "\n"), nil, "line 1: key is 16 bytes"},
		{"empty", []byte("\n"), nil, "no keys"},
		{"only comments", []byte("# nothing\n"), nil, "no keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTicketKeys(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseTicketKeys = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseTicketKeys: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("parseTicketKeys = %d keys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i][:], tt.want[i]) {
					t.Errorf("key %d = %x, want %x", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestTicketKeyFileErrorsAtNew(t *testing.T) {
	dir := t.TempDir()
	p := makePair(t, dir, "a", certSpec{names: []string{"a.test"}})
	bad := filepath.Join(dir, "bad.keys")
	writeFile(t, bad, []byte("definitely not a key\n"))
	missing := filepath.Join(dir, "missing.keys")
	for _, path := range []string{bad, missing} {
		_, err := New(Options{Pairs: []Pair{p.Pair}, SessionTickets: true, TicketKeyFile: path})
		var fe *FileError
		if !errors.As(err, &fe) || fe.Path != path || fe.Kind != "ticket key" {
			t.Errorf("New with ticket key file %s: error %v, want a ticket key *FileError naming it", path, err)
		}
	}
	// With tickets off the file is not needed.
	if _, err := New(Options{Pairs: []Pair{p.Pair}, TicketKeyFile: missing}); err != nil {
		t.Errorf("New with tickets off and a missing key file: %v, want nil", err)
	}
}

// resumes makes two connections with one session cache and reports whether
// the second resumed the first's session.
func resumes(t *testing.T, first, second string, version uint16, between func()) bool {
	t.Helper()
	cfg := &tls.Config{
		ServerName:         "a.test",
		RootCAs:            rootPool(t),
		MaxVersion:         version,
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
	st, err := handshake(first, cfg)
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	if st.DidResume {
		t.Fatalf("first handshake resumed, want a full handshake")
	}
	if between != nil {
		between()
	}
	st, err = handshake(second, cfg)
	if err != nil {
		t.Fatalf("second handshake: %v", err)
	}
	return st.DidResume
}

func TestTicketsSharedThroughKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := makePair(t, dir, "a", certSpec{names: []string{"a.test"}})
	k1 := bytes.Repeat([]byte{7}, 32)
	k2 := bytes.Repeat([]byte{9}, 32)
	b64 := base64.StdEncoding.EncodeToString
	files := []struct {
		name string
		data []byte
	}{
		{"base64", []byte(b64(k1) + "\n" + b64(k2) + "\n")},
		{"raw", append(append([]byte{}, k1...), k2...)},
	}
	for _, f := range files {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(f.name+"/"+tls.VersionName(version), func(t *testing.T) {
				keyFile := filepath.Join(t.TempDir(), "tickets")
				writeFile(t, keyFile, f.data)
				o := Options{Pairs: []Pair{p.Pair}, SessionTickets: true, TicketKeyFile: keyFile}
				a, err := New(o)
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				b, err := New(o)
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if !resumes(t, serve(t, a.TLSConfig()), serve(t, b.TLSConfig()), version, nil) {
					t.Errorf("session from store A did not resume on store B sharing the key file")
				}
			})
		}
	}

	// A store with different keys cannot resume it.
	other := filepath.Join(dir, "other")
	writeFile(t, other, bytes.Repeat([]byte{3}, 32))
	shared := filepath.Join(dir, "shared")
	writeFile(t, shared, k1)
	a, err := New(Options{Pairs: []Pair{p.Pair}, SessionTickets: true, TicketKeyFile: shared})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Pairs: []Pair{p.Pair}, SessionTickets: true, TicketKeyFile: other})
	if err != nil {
		t.Fatal(err)
	}
	if resumes(t, serve(t, a.TLSConfig()), serve(t, c.TLSConfig()), 0, nil) {
		t.Errorf("session resumed on a store with different ticket keys")
	}
}

func TestTicketsInMemoryRotation(t *testing.T) {
	dir := t.TempDir()
	p := makePair(t, dir, "a", certSpec{names: []string{"a.test"}})
	tests := []struct {
		name      string
		tickets   bool
		rotations int
		want      bool
	}{
		{"no rotation", true, 0, true},
		{"one rotation keeps the previous key", true, 1, true},
		{"two rotations drop the key", true, 2, false},
		{"tickets off", false, 0, false},
	}
	for _, tt := range tests {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tt.name+"/"+tls.VersionName(version), func(t *testing.T) {
				s, err := New(Options{Pairs: []Pair{p.Pair}, SessionTickets: tt.tickets})
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				addr := serve(t, s.TLSConfig())
				got := resumes(t, addr, addr, version, func() {
					for range tt.rotations {
						s.rotateTicketKeys()
					}
				})
				if got != tt.want {
					t.Errorf("resumed after %d rotations = %v, want %v", tt.rotations, got, tt.want)
				}
			})
		}
	}
}

func TestUpdateKeepsInMemoryTicketKeys(t *testing.T) {
	dir := t.TempDir()
	p := makePair(t, dir, "a", certSpec{names: []string{"a.test"}})
	o := Options{Pairs: []Pair{p.Pair}, SessionTickets: true}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addr := serve(t, s.TLSConfig())
	got := resumes(t, addr, addr, 0, func() {
		if err := s.Update(o); err != nil {
			t.Fatalf("Update: %v", err)
		}
	})
	if !got {
		t.Errorf("session did not resume across a config Update, want in-memory keys kept")
	}
	got = resumes(t, addr, addr, 0, func() {
		if err := s.Update(Options{Pairs: o.Pairs}); err != nil {
			t.Fatalf("Update: %v", err)
		}
	})
	if got {
		t.Errorf("session resumed after Update turned tickets off")
	}
}

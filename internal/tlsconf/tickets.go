package tlsconf

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// TicketKeySize is the size of one session ticket key.
const TicketKeySize = 32

// ticketKeysKept is how many in-memory keys are kept: the current one, which
// encrypts, and the previous one, which still decrypts.
const ticketKeysKept = 2

// parseTicketKeys decodes a ticket key file: base64 lines when the file is
// text, else raw 32-byte blocks.
func parseTicketKeys(data []byte) ([][TicketKeySize]byte, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("no keys: want one or more 32-byte keys, raw or one base64 key per line")
	}
	if !isText(data) {
		if len(data)%TicketKeySize != 0 {
			return nil, fmt.Errorf("binary file of %d bytes: want a multiple of %d bytes, or one base64 key per line", len(data), TicketKeySize)
		}
		keys := make([][TicketKeySize]byte, len(data)/TicketKeySize)
		for i := range keys {
			copy(keys[i][:], data[i*TicketKeySize:])
		}
		return keys, nil
	}
	var keys [][TicketKeySize]byte
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(line)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64 (want one 32-byte key per line, e.g. from `openssl rand -base64 32`)", i+1)
		}
		if len(b) != TicketKeySize {
			return nil, fmt.Errorf("line %d: key is %d bytes, want %d", i+1, len(b), TicketKeySize)
		}
		keys = append(keys, [TicketKeySize]byte(b))
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys, only comments: want one base64 32-byte key per line")
	}
	return keys, nil
}

// isText reports whether data looks like a text file: printable ASCII and
// whitespace only. Random binary keys are practically never all printable.
func isText(data []byte) bool {
	for _, c := range data {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

// newTicketKey returns a fresh random key.
func newTicketKey() [TicketKeySize]byte {
	var k [TicketKeySize]byte
	rand.Read(k[:]) // never fails (crypto/rand panics on failure since Go 1.24)
	return k
}

// rotateKeys prepends a fresh key and keeps at most ticketKeysKept keys.
func rotateKeys(keys [][TicketKeySize]byte) [][TicketKeySize]byte {
	out := make([][TicketKeySize]byte, 0, ticketKeysKept)
	out = append(out, newTicketKey())
	for _, k := range keys {
		if len(out) == ticketKeysKept {
			break
		}
		out = append(out, k)
	}
	return out
}

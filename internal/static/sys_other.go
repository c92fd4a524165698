//go:build !unix

package static

import "os"

// DefaultMaxOpenFiles is the open-file bound used when Options.MaxOpen is zero.
func DefaultMaxOpenFiles() int { return DefaultMaxOpen }

// openFlags opens files for reading.
const openFlags = os.O_RDONLY

//go:build !unix

package spool

// DefaultMaxFiles is the temp file budget used when Options.MaxFiles is
// zero; without RLIMIT_NOFILE it is a fixed 1024.
func DefaultMaxFiles() int { return 1024 }

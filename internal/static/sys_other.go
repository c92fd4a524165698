//go:build !unix

package static

// defaultMaxOpen is the open-file bound used when Options.MaxOpen is zero.
func defaultMaxOpen() int { return DefaultMaxOpen }

//go:build !linux

package cli

// markInheritedCloseOnExec does nothing off Linux, where there is no
// /proc/self/fd to list; Bulwark's supported platform is Linux.
func markInheritedCloseOnExec(string) error { return nil }

//go:build !linux

package spool

// onTmpfs reports false: tmpfs detection is Linux-only.
func onTmpfs(string) bool { return false }

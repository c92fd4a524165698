//go:build unix

package static

import (
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestFIFOIsRefusedAtOnce: a named pipe in the served directory is not a
// regular file, so it is a 404; opening it must not block the request
// until some writer opens the pipe.
func TestFIFOIsRefusedAtOnce(t *testing.T) {
	dir := t.TempDir()
	pipe := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(pipe, 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	s, err := New(Options{Mounts: []Mount{{Path: "/static/", Dir: dir}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Middleware(http.NotFoundHandler())
	done := make(chan int, 1)
	go func() { done <- get(h, "/static/pipe").Code }()
	select {
	case code := <-done:
		if code != 404 {
			t.Errorf("GET a FIFO = %d, want 404", code)
		}
	case <-time.After(5 * time.Second):
		if f, err := os.OpenFile(pipe, os.O_WRONLY, 0); err == nil { // unblock the open
			f.Close()
		}
		t.Fatal("GET a FIFO still blocked after 5 s: the open waits for a writer")
	}
}

package main

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPatternMatchesApp checks that the Go side computes the same download
// pattern as bench/app/app.py, by calling the app module's block function
// under Debian's Python (the app itself is not served).
func TestPatternMatchesApp(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import fastapi").Run(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s with fastapi not available (%v); skipping (CI unset)", py, err)
		}
		t.Fatalf("%s with fastapi not available: %v", py, err)
	}
	const script = `
import hashlib, sys
sys.path.insert(0, "../../app")
import app
h = hashlib.sha256()
size, k = int(sys.argv[2]), 0
while size > 0:
    b = app.block(sys.argv[1], k)[:size]
    h.update(b); size -= len(b); k += 1
print(h.hexdigest())
`
	tests := []struct {
		seed string
		size int64
	}{
		{"c0", 1},
		{"c3", 3<<20 + 5},
		{"slow", 1 << 20},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, py, "-c", script, tt.seed, strconv.FormatInt(tt.size, 10)).Output()
		cancel()
		if err != nil {
			t.Fatalf("app.py pattern for %q: %v", tt.seed, err)
		}
		if got, want := PatternSHA256(tt.seed, tt.size), strings.TrimSpace(string(out)); got != want {
			t.Errorf("PatternSHA256(%q, %d) = %s, want %s (app.py)", tt.seed, tt.size, got, want)
		}
	}
}

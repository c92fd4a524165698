package supervise

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// debianPython is the interpreter that has uvicorn and fastapi installed.
const debianPython = "/usr/bin/python3"

const fastAPIApp = `import os
from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
def health():
    return {"ok": True}


@app.get("/pid")
def pid():
    return {"pid": os.getpid(), "pool": os.environ.get("DB_POOL_SIZE")}
`

// needUvicorn skips the test when uvicorn is missing, unless CI is set.
func needUvicorn(t *testing.T) {
	t.Helper()
	err := exec.Command(debianPython, "-c", "import uvicorn, fastapi").Run()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s cannot import uvicorn and fastapi (CI is set, so this fails): %v", debianPython, err)
	}
	t.Skipf("skipping: %s cannot import uvicorn and fastapi: %v", debianPython, err)
}

func TestRealUvicorn(t *testing.T) {
	needUvicorn(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(fastAPIApp), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{
		Command:      []string{debianPython, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "{port}"},
		Dir:          dir,
		DefaultEnv:   map[string]string{"DB_POOL_SIZE": "3", "PYTHONUNBUFFERED": "1"},
		StartTimeout: 30 * time.Second,
	}, nil)
	first := waitReady(t, h)
	pidOf := func() (int, string) {
		t.Helper()
		code, body, _, err := h.get("/pid")
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET /pid = %d %q %v, want 200", code, body, err)
		}
		var v struct {
			PID  int    `json:"pid"`
			Pool string `json:"pool"`
		}
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("decoding %q: %v", body, err)
		}
		return v.PID, v.Pool
	}
	if pid, pool := pidOf(); pid != first.PID || pool != "3" {
		t.Errorf("GET /pid = pid %d, DB_POOL_SIZE %q; want %d, 3", pid, pool, first.PID)
	}
	// uvicorn logs to stderr; the lines reach our log marked as the app's.
	waitFor(t, 5*time.Second, "uvicorn's startup line in the log", func() bool {
		return len(h.logs.find("Uvicorn running on")) > 0
	})
	if err := h.s.Restart(ReasonManual); err != nil {
		t.Fatalf("Restart() = %v", err)
	}
	second := h.s.Status()
	if second.PID == first.PID || second.State != StateReady {
		t.Errorf("after Restart: %+v, want ready with a new pid", second)
	}
	if pid, _ := pidOf(); pid != second.PID {
		t.Errorf("GET /pid after restart = %d, want %d", pid, second.PID)
	}
	if alive(first.PID) {
		t.Errorf("old uvicorn pid %d alive after the restart", first.PID)
	}
	if err := h.stop(t); err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	if alive(second.PID) {
		t.Errorf("uvicorn pid %d alive after Run returned", second.PID)
	}
	if got := h.s.Status().LastExit; got != "exit code 0" {
		t.Errorf("LastExit = %q, want exit code 0 (uvicorn stops cleanly on SIGTERM)", got)
	}
}

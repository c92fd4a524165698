package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckReportsEveryProblem is the case: a missing certificate
// used to hide a missing key, command and directory. Each problem must be
// reported, named by its key, TLS problems with their file too.
func TestCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cfg := testConfig(t, "[app]\ncommand = [\"no-such-server-x\", \"app:app\"]\ndir = \""+filepath.Join(dir, "nodir")+"\"\n")
	cfg.TLS.Cert, cfg.TLS.Key = cert, key
	_, err := Check(cfg)
	if err == nil {
		t.Fatal("Check = nil error, want four problems")
	}
	for _, want := range []string{
		`tls.cert: certificate file "` + cert + `": cannot open`,
		`tls.key: key file "` + key + `": cannot open`,
		`app.command: "no-such-server-x" is not found on PATH`,
		`app.dir: "` + filepath.Join(dir, "nodir") + `": no such file or directory`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error lacks %q:\n%v", want, err)
		}
	}
}

func TestCheckProgram(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "run.sh")
	plain := filepath.Join(dir, "plain.txt")
	for p, mode := range map[string]os.FileMode{exe: 0o755, plain: 0o644} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prog, dir, wantErr string
	}{
		{"sh", "", ""},
		{exe, "", ""},
		{"./run.sh", dir, ""},
		{"./missing.sh", dir, "relative to app.dir"},
		{plain, "", "not executable"},
		{dir, "", "is a directory"},
		{"no-such-server-x", "", "not found on PATH"},
	}
	for _, tt := range tests {
		err := checkProgram(tt.prog, tt.dir)
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("checkProgram(%q, %q) = %v, want error containing %q", tt.prog, tt.dir, err, tt.wantErr)
		}
	}
}

func TestCheckListenArgs(t *testing.T) {
	tests := []struct {
		cmd      []string
		upstream string
		wantErr  string
	}{
		{[]string{"uvicorn", "app:app", "--port", "8002"}, "127.0.0.1:8002", ""},
		{[]string{"uvicorn", "app:app", "--port=8002"}, "127.0.0.1:8002", ""},
		{[]string{"uvicorn", "app:app", "--port", "8000"}, "127.0.0.1:8002", `listens on port 8000 (--port 8000) but upstream.address is "127.0.0.1:8002"`},
		{[]string{"uvicorn", "app:app"}, "127.0.0.1:8002", "no --port: the server's default"},
		{[]string{"/srv/.venv/bin/gunicorn", "-b", "127.0.0.1:9000", "app:app"}, "127.0.0.1:8002", "port 9000"},
		{[]string{"gunicorn", "--bind=unix:/run/app.sock", "app:app"}, "unix:/run/app.sock", ""},
		{[]string{"uvicorn", "app:app", "--uds", "/run/a.sock"}, "unix:/run/b.sock", `unix socket /run/a.sock (--uds /run/a.sock)`},
		{[]string{"uvicorn", "app:app", "--uds", "/run/a.sock"}, "127.0.0.1:8002", "--uds {socket}"},
		{[]string{"sh", "-c", "exec uvicorn app:app --port 8001"}, "127.0.0.1:8002", "port 8001"},
		{[]string{"uvicorn", "app:app", "--port", "{port}"}, "127.0.0.1:8002", ""},
		{[]string{"uvicorn", "app:app", "--uds", "{socket}"}, "127.0.0.1:8002", ""},
		{[]string{"python3", "server.py"}, "127.0.0.1:8002", ""},
		{[]string{"sh", "-c", "uvicorn app:app --port $PORT"}, "127.0.0.1:8002", ""},
	}
	for _, tt := range tests {
		err := checkListenArgs(tt.cmd, tt.upstream)
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("checkListenArgs(%q, %q) = %v, want error containing %q", tt.cmd, tt.upstream, err, tt.wantErr)
		}
	}
}

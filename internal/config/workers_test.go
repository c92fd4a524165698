package config

import (
	"runtime"
	"strings"
	"testing"
)

// TestWorkers checks app.workers: a number or "auto", from the file and the
// environment, rendered back as written, and refused without a
// placeholder for several workers.
func TestWorkers(t *testing.T) {
	load := func(body string, env ...string) (*Config, error) {
		o := machine("box1500mib")
		o.Path = writeConfig(t, body)
		o.Environ = env
		return Load(o)
	}
	const cmd = "[app]\ncommand = [\"uvicorn\", \"app:app\", \"--port\", \"{port}\"]\n"
	c, err := load(cmd + "workers = 3\nmax_requests = 50\nmax_requests_jitter = 10\nmax_lifetime = \"1h\"\nrequest_timeout = \"2s\"\n")
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if c.App.Workers != 3 || c.App.MaxRequests != 50 || c.App.MaxRequestsJitter != 10 ||
		c.App.MaxLifetime.D().Hours() != 1 || c.App.RequestTimeout.D().Seconds() != 2 {
		t.Errorf("app = %+v", c.App)
	}
	c, err = load(cmd+"max_memory = \"256MiB\"\nworkers = \"auto\"\n", "BULWARK_APP_WORKERS=auto")
	if err != nil {
		t.Fatalf("Load(auto) = %v", err)
	}
	if c.App.Workers != WorkersAuto || !strings.Contains(c.Render(), `workers = "auto"`) {
		t.Errorf("workers = %v; render:\n%s", c.App.Workers, c.Render())
	}
	if n, why := c.PoolSize(int64(2048*MiB), int64(96*MiB)); n < 1 || !strings.Contains(why, "auto") {
		t.Errorf("PoolSize = %d %q", n, why)
	}
	bad := []struct{ body, want string }{
		{"[app]\ncommand = [\"uvicorn\", \"app:app\"]\nworkers = 2\n", "app.workers: several workers need an address each"},
		{cmd + "workers = 0\n", "app.workers: must be from 1"},
		{cmd + "workers = -1\n", "app.workers: must be from 1"}, // not "auto"
		{cmd + "workers = \"-1\"\n", "app.workers: must be from 1"},
		{cmd + "workers = -2147483648\n", "app.workers: must be from 1"},
		{cmd + "workers = 100000\n", "app.workers: must be from 1"},
		{cmd + "workers = \"many\"\n", `app.workers: expected a number of workers or "auto"`},
		{cmd + "workers = \"auto\"\nmax_memory = \"0B\"\n", "app.workers: \"auto\" divides"},
		{cmd + "max_requests = -1\n", "app.max_requests: must be 0"},
	}
	for _, tt := range bad {
		if _, err := load(tt.body); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%q) = %v, want an error containing %q", tt.body, err, tt.want)
		}
	}
}

// TestPoolSizeAuto checks the arithmetic of "auto": budget over
// max_memory, at least one.
func TestPoolSizeAuto(t *testing.T) {
	c := Default()
	c.App.Workers, c.App.MaxMemory = WorkersAuto, 100*MiB
	if n, _ := c.PoolSize(int64(800*MiB), int64(100*MiB)); n != min(6, 2*runtime.NumCPU()) {
		t.Errorf("PoolSize(800MiB, 100MiB) = %d, want %d", n, min(6, 2*runtime.NumCPU()))
	}
	if n, why := c.PoolSize(int64(100*MiB), int64(96*MiB)); n != 1 || !strings.Contains(why, "at least 1") {
		t.Errorf("PoolSize(100MiB) = %d %q, want 1", n, why)
	}
}

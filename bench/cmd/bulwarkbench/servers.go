package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"
)

// Server names, as they head the table's columns.
const (
	srvBulwark = "bulwark"
	srvNginx   = "nginx"
	srvHAProxy = "haproxy"
	srvCaddy   = "caddy"
	srvUvicorn = "uvicorn --ssl"
)

// Variants of a server's configuration.
const (
	varBase    = "base"    // bulwark.toml and its equivalents
	varIsolate = "isolate" // one request at a time to the app
	varStack   = "stack"   // the server in front of the FastAPI app; Bulwark supervises it
	varProfile = "profile" // Bulwark built with a pprof listener
	varEdge    = "edge"    // base plus static files and compression (nginx gzip_comp_level 6)
)

// Env is what the suite knows about this machine and run.
type Env struct {
	BenchDir, Work   string
	Bulwark, Prof    string // binaries
	Self             string // this program (the Go backend)
	Port, UpPort     int
	Certs            map[string]CertFiles
	ProfAddr         string
	startTimeout     time.Duration
	upstreamAppStart time.Duration
}

// Instance is one started server and what is measured of it.
type Instance struct {
	procs []*Proc
	// Roots are the process trees measured: the server alone, or for the
	// whole-stack rows every process of the stack.
	Roots []int
}

// Stop ends every process of the instance, by PID.
func (in *Instance) Stop() {
	for i := len(in.procs) - 1; i >= 0; i-- {
		in.procs[i].Stop(5 * time.Second)
	}
}

// URL is the server's HTTPS address.
func (e *Env) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", e.Port) }

// Addr is the server's host:port.
func (e *Env) Addr() string { return fmt.Sprintf("127.0.0.1:%d", e.Port) }

// tmplData is what the peer configuration templates see.
type tmplData struct {
	Run, Spool         string
	Cert, Key, Bundle  string
	Port, UpstreamPort int
	MaxConns           int
	Static             string // the edge variant's static directory; "" otherwise
}

// StartBackend starts the 1 KiB Go backend ("go") or the FastAPI app under
// uvicorn ("app") on the upstream port.
func (e *Env) StartBackend(ctx context.Context, kind string) (*Proc, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", e.UpPort)
	if err := checkPortFree(addr); err != nil {
		return nil, err
	}
	var p *Proc
	var err error
	switch kind {
	case "go":
		p, err = startProc("go backend", []string{e.Self, "backend", "-addr", addr}, nil, e.Work, filepath.Join(e.Work, "backend.log"))
	case "app":
		p, err = startProc("uvicorn app", e.uvicornArgv(false, ""), nil, e.Work, filepath.Join(e.Work, "app.log"))
	default:
		return nil, fmt.Errorf("unknown backend %q", kind)
	}
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, "http://"+addr+"/", []*Proc{p}, e.upstreamAppStart); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("backend %s: %w (log: %s)", kind, err, lastLog(p, e.Work))
	}
	return p, nil
}

// uvicornArgv is the FastAPI app under uvicorn: on the upstream port, or
// terminating TLS itself on the front port with cert.
func (e *Env) uvicornArgv(tls bool, cert string) []string {
	port := e.UpPort
	if tls {
		port = e.Port
	}
	argv := []string{"/usr/bin/python3", "-m", "uvicorn", "app:app",
		"--app-dir", filepath.Join(e.BenchDir, "app"),
		"--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--loop", "asyncio", "--http", "h11",
		"--timeout-keep-alive", "120", "--no-access-log", "--log-level", "warning"}
	if tls {
		c := e.Certs[cert]
		argv = append(argv, "--ssl-keyfile", c.Key, "--ssl-certfile", c.Cert)
	}
	return argv
}

// Start starts server in variant with the cert kind, waits until it answers
// through to its upstream, and returns it.
func (e *Env) Start(ctx context.Context, server, variant, cert string) (*Instance, error) {
	if err := checkPortFree(e.Addr()); err != nil {
		return nil, err
	}
	c := e.Certs[cert]
	run := filepath.Join(e.Work, "run-"+sanitize(server))
	spool := filepath.Join(e.Work, "spool-"+sanitize(server))
	for _, d := range []string{run, spool} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	data := tmplData{Run: run, Spool: spool, Cert: c.Cert, Key: c.Key, Bundle: c.Bundle, Port: e.Port, UpstreamPort: e.UpPort}
	if variant == varIsolate {
		data.MaxConns = 1
	}
	if variant == varEdge {
		data.Static = e.staticDir()
	}
	in := &Instance{}
	var argv, env []string
	logPath := filepath.Join(run, "server.log")
	switch server {
	case srvBulwark:
		file := map[string]string{varBase: "bulwark.toml", varIsolate: "bulwark-isolate.toml", varStack: "bulwark-stack.toml", varProfile: "bulwark.toml"}[variant]
		bin := e.Bulwark
		if variant == varProfile {
			bin = e.Prof
			env = append(env, "BULWARKPROF_ADDR="+e.ProfAddr)
		}
		conf := filepath.Join(e.BenchDir, file)
		if variant == varEdge {
			var err error
			if conf, err = e.edgeConfig(run); err != nil {
				return nil, err
			}
		}
		argv = []string{bin, "run", "--config", conf}
		env = append(env, "BULWARK_TLS_CERT="+c.Cert, "BULWARK_TLS_KEY="+c.Key,
			"BULWARK_LIMITS_SPOOL_DIR="+spool, "BULWARK_APP_DIR="+filepath.Join(e.BenchDir, "app"))
		if e.Port != 8443 {
			env = append(env, "BULWARK_LISTEN_HTTPS="+e.Addr())
		}
		if e.UpPort != 8002 {
			env = append(env, fmt.Sprintf("BULWARK_UPSTREAM_ADDRESS=127.0.0.1:%d", e.UpPort))
			if variant == varStack {
				env = append(env, "BULWARK_APP_COMMAND="+tomlArray(e.uvicornArgv(false, "")))
			}
		}
	case srvNginx:
		conf, err := render(e.BenchDir, "nginx.conf.tmpl", run, data)
		if err != nil {
			return nil, err
		}
		argv = []string{"nginx", "-e", filepath.Join(run, "nginx-error.log"), "-c", conf}
	case srvHAProxy:
		conf, err := render(e.BenchDir, "haproxy.cfg.tmpl", run, data)
		if err != nil {
			return nil, err
		}
		argv = []string{"haproxy", "-db", "-f", conf}
	case srvCaddy:
		conf, err := render(e.BenchDir, "Caddyfile.tmpl", run, data)
		if err != nil {
			return nil, err
		}
		argv = []string{"caddy", "run", "--config", conf, "--adapter", "caddyfile"}
		env = []string{"HOME=" + run, "XDG_CONFIG_HOME=" + run, "XDG_DATA_HOME=" + run}
	case srvUvicorn:
		argv = e.uvicornArgv(true, cert)
	default:
		return nil, fmt.Errorf("unknown server %q", server)
	}
	if variant == varStack && server != srvBulwark && server != srvUvicorn {
		// The proxy in front of a separately started app: both are counted.
		app, err := e.StartBackend(ctx, "app")
		if err != nil {
			return nil, err
		}
		in.procs = append(in.procs, app)
	}
	p, err := startProc(server, argv, env, run, logPath)
	if err != nil {
		in.Stop()
		return nil, err
	}
	in.procs = append(in.procs, p)
	limit := e.startTimeout
	if variant == varStack || server == srvUvicorn {
		limit = e.upstreamAppStart
	}
	if err := waitReady(ctx, e.URL()+"/", []*Proc{p}, limit); err != nil {
		in.Stop()
		return nil, fmt.Errorf("%s (%s, %s): %w; log: %s", server, variant, cert, err, tail(logPath, 400))
	}
	for _, p := range in.procs {
		in.Roots = append(in.Roots, p.PID())
	}
	if variant != varStack {
		in.Roots = []int{p.PID()}
	}
	return in, nil
}

// render fills the template name from bench/conf into dir.
func render(benchDir, name, dir string, data tmplData) (string, error) {
	t, err := template.ParseFiles(filepath.Join(benchDir, "conf", name))
	if err != nil {
		return "", fmt.Errorf("reading config template: %w", err)
	}
	out := filepath.Join(dir, name[:len(name)-len(".tmpl")])
	f, err := os.Create(out)
	if err != nil {
		return "", fmt.Errorf("rendering %s: %w", name, err)
	}
	if err := t.Execute(f, data); err != nil {
		f.Close()
		return "", fmt.Errorf("rendering %s: %w", name, err)
	}
	return out, f.Close()
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

func tomlArray(ss []string) string {
	out := "["
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += strconv.Quote(s)
	}
	return out + "]"
}

// tail returns up to n bytes from the end of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func lastLog(p *Proc, work string) string {
	return tail(filepath.Join(work, map[string]string{"go backend": "backend.log", "uvicorn app": "app.log"}[p.Name]), 400)
}

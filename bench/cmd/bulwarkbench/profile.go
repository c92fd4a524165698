package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// profile runs Bulwark built with a pprof listener (bench/cmd/bulwarkprof)
// under h1 and h2 c=50 loads and with 5000 idle connections, saves CPU and heap
// profiles next to the results file and keeps their top entries.
func (s *suite) profile(ctx context.Context) error {
	if s.env.Prof == "" {
		return fmt.Errorf("no --bulwark-prof binary given")
	}
	dir := s.profileDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating profile dir: %w", err)
	}
	be, err := s.env.StartBackend(ctx, "go")
	if err != nil {
		return err
	}
	defer be.Stop(5 * time.Second)

	for _, proto := range []string{"h1", "h2"} {
		err = s.withServer(ctx, srvBulwark, varProfile, "ecdsa", func(in *Instance) error {
			return s.profileLoad(ctx, in, proto, dir)
		})
		if err != nil {
			s.res.Note("profile under %s load: %v", proto, err)
		}
	}
	for _, proto := range []string{"h1", "h2"} {
		err = s.withServer(ctx, srvBulwark, varProfile, "ecdsa", func(in *Instance) error {
			o := s.idleOpts(proto, 5000, in.Roots)
			var res IdleResult
			conns := openIdle(ctx, o, o.N, &res)
			defer closeIdle(conns)
			if len(conns) < o.N {
				s.res.Note("profile: %d of %d idle %s connections opened (first error: %s)", len(conns), o.N, proto, res.FirstErr)
			}
			sleepCtx(ctx, o.Settle)
			path := filepath.Join(dir, "heap-idle-"+proto+"-5000.pprof")
			heapErr := s.fetchProfile(ctx, "/debug/pprof/heap?gc=1", path, 30*time.Second)
			gpath := filepath.Join(dir, "goroutine-idle-"+proto+"-5000.pprof")
			gErr := s.fetchProfile(ctx, "/debug/pprof/goroutine", gpath, 30*time.Second)
			title := fmt.Sprintf("heap in use with %d idle %s connections", len(conns), proto)
			s.addTop(title, path, heapErr, "-sample_index=inuse_space")
			s.addTop(fmt.Sprintf("goroutines with %d idle %s connections", len(conns), proto), gpath, gErr, "-cum")
			return nil
		})
		if err != nil {
			s.res.Note("profile with idle %s connections: %v", proto, err)
		}
	}
	return nil
}

func (s *suite) profileDir() string {
	if s.cfg.out != "" {
		return strings.TrimSuffix(s.cfg.out, ".md") + "-pprof"
	}
	return filepath.Join(s.env.Work, "pprof")
}

// fetchProfile saves one profile from the pprof listener.
func (s *suite) fetchProfile(ctx context.Context, path, file string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.env.ProfAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: status %d", path, resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("saving profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("saving profile: %w", err)
	}
	return f.Close()
}

// addTop keeps `go tool pprof -top` of a profile for the results file.
func (s *suite) addTop(title, file string, fetchErr error, extra ...string) {
	if fetchErr != nil {
		s.profiles = append(s.profiles, fmt.Sprintf("### %s\n\nnot taken: %v\n", title, fetchErr))
		return
	}
	args := append([]string{"tool", "pprof", "-top", "-nodecount=20"}, extra...)
	args = append(args, s.env.Prof, file)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		s.profiles = append(s.profiles, fmt.Sprintf("### %s\n\n`go tool pprof` failed: %v\n", title, err))
		return
	}
	s.profiles = append(s.profiles, fmt.Sprintf("### %s\n\n`%s` (`go tool pprof -top %s`)\n\n```\n%s```\n",
		title, filepath.Base(file), strings.Join(extra, " "), out))
}

// profileLoad takes CPU and heap profiles of Bulwark in the middle of a
// 12 s c=50 load over proto.
func (s *suite) profileLoad(ctx context.Context, in *Instance, proto, dir string) error {
	const dur = 12 * time.Second // the same in --quick mode: one measurement
	type loadOut struct {
		r   LoadResult
		err error
	}
	done := make(chan loadOut, 1)
	go func() {
		r, err := MeasureLoad(ctx, LoadOptions{URL: s.env.URL() + "/", Proto: proto, Conns: 50, Threads: 2,
			Duration: dur, Warmup: 2000, Roots: in.Roots, WorkDir: s.env.Work})
		done <- loadOut{r, err}
	}()
	// The warm-up takes well under two seconds; profile the middle of the run.
	sleepCtx(ctx, 3*time.Second)
	secs := max(1, int(dur.Seconds())-3)
	cpuFile := filepath.Join(dir, "cpu-"+proto+"-c50.pprof")
	heapFile := filepath.Join(dir, "heap-"+proto+"-c50.pprof")
	cpuErr := s.fetchProfile(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), cpuFile, time.Duration(secs+20)*time.Second)
	heapErr := s.fetchProfile(ctx, "/debug/pprof/heap", heapFile, 20*time.Second)
	lo := <-done
	if lo.err != nil {
		return lo.err
	}
	s.logf("profile %s load: %.0f req/s, CPU %.2f s/10k", proto, lo.r.RPS, lo.r.CPUPer10k())
	s.addTop("CPU, "+proto+" c=50 load", cpuFile, cpuErr)
	s.addTop("CPU, "+proto+" c=50 load, cumulative", cpuFile, cpuErr, "-cum")
	s.addTop("heap in use at the end of the "+proto+" c=50 load", heapFile, heapErr, "-sample_index=inuse_space")
	return nil
}

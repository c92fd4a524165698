package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSeveralAppAddressesOneDies: two uvicorn apps behind one Bulwark take
// the requests in turn; when one is killed (SIGKILL, by its PID), no client
// request fails: one that finds it refusing goes to the other, which takes
// every request from then on.
func TestSeveralAppAddressesOneDies(t *testing.T) {
	up1, app1 := startUvicorn(t)
	up2, app2 := startUvicorn(t)
	in := startBulwark(t, baseConfig+"\n[upstream]\naddress = [\""+up1+"\", \""+up2+"\"]\nconnect_timeout = \"2s\"\n", nil)
	c := in.client(false)
	get := func() int {
		t.Helper()
		res, err := c.Get(in.url("/"))
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, res)
		if res.StatusCode != 200 {
			t.Fatalf("status %d (%s), want 200", res.StatusCode, body)
		}
		var v struct{ PID int }
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("answer %q: %v", body, err)
		}
		return v.PID
	}
	before := map[int]int{}
	for range 20 {
		before[get()]++
	}
	pid1, pid2 := app1.cmd.Process.Pid, app2.cmd.Process.Pid
	if before[pid1] != 10 || before[pid2] != 10 {
		t.Errorf("answers by app pid %v, want 10 from each of %d and %d", before, pid1, pid2)
	}

	app1.stop(syscall.SIGKILL, 5*time.Second)
	for i := range 40 {
		if pid := get(); pid != pid2 {
			t.Fatalf("request %d after the kill answered by pid %d, want the surviving %d", i, pid, pid2)
		}
	}
	m := scrape(t, in.admin)
	if v, ok := m[`bulwark_upstream_up{address="`+up1+`"}`]; !ok || v != 0 {
		t.Errorf("up gauge of the killed app = %v (exported: %v), want 0", v, ok)
	}
	if v := m[`bulwark_upstream_up{address="`+up2+`"}`]; v != 1 {
		t.Errorf("up gauge of the live app = %v, want 1", v)
	}
	if v := m["bulwark_upstream_failovers_total"]; v < 1 {
		t.Errorf("failovers_total = %v, want at least 1", v)
	}
	out, err := exec.Command(bulwarkBin, "status", "--admin", in.admin).CombinedOutput()
	if err != nil {
		t.Fatalf("bulwark status: %v\n%s", err, out)
	}
	if want := "UPSTREAM     " + up1 + " down · " + up2 + " up"; !strings.Contains(string(out), want) {
		t.Errorf("bulwark status lacks %q:\n%s", want, out)
	}
}

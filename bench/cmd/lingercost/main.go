// Command lingercost measures what lingering connections cost a server:
// -n clients, from 200 loopback addresses (127.0.2.1–200, so per-address
// caps do not stop them), each POST a body declared over max_body over TLS,
// read the 413, and keep trickling one byte every -every for -hold, so the
// server lingers on all of them (nginx's lingering_close). It prints the
// server's RSS (VmRSS of -pid) before, while they linger, and after. For
// the Go heap, run bench/cmd/bulwarkprof and take /debug/pprof/heap while
// they linger (bench/README.md). Loopback only; Linux only.
//
//	lingercost -pid $(pidof bulwark) -addr 127.0.0.1:8443 -n 2000 -hold 12s
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rss is pid's VmRSS line.
func rss(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}

func main() {
	n := flag.Int("n", 1000, "clients")
	pid := flag.Int("pid", 0, "server pid")
	addr := flag.String("addr", "127.0.0.1:8443", "server")
	hold := flag.Duration("hold", 10*time.Second, "how long to trickle")
	every := flag.Duration("every", time.Second, "one byte per")
	flag.Parse()
	fmt.Println("rss before:", rss(*pid))
	var got413, failed atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(*hold)
	for i := 0; i < *n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(i%200+1))}}
			c, err := tls.DialWithDialer(&d, "tcp", *addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
			c.Write(make([]byte, 4096))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || res.StatusCode != 413 {
				failed.Add(1)
				return
			}
			got413.Add(1)
			for time.Now().Before(stop) {
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
				time.Sleep(*every)
			}
		}(i)
	}
	time.Sleep(*hold / 2)
	fmt.Println("413s:", got413.Load(), "failed:", failed.Load())
	fmt.Println("rss while lingering:", rss(*pid))
	wg.Wait()
	time.Sleep(2 * time.Second)
	fmt.Println("rss after:", rss(*pid))
}

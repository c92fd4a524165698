// Command brbench measures CPU per MB and size ratio of brotli q4/q5,
// zstd and gzip on text, JSON and JS of a few sizes (issue 19).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

type codec struct {
	name string
	w    io.WriteCloser
	rst  func(io.Writer)
}

func codecs() []codec {
	var cs []codec
	for _, q := range []int{4, 5} {
		w := brotli.NewWriterLevel(io.Discard, q)
		cs = append(cs, codec{fmt.Sprintf("brotli q%d", q), w, w.Reset})
	}
	for _, lv := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		z, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(lv), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(1<<20))
		cs = append(cs, codec{"zstd " + lv.String(), z, z.Reset})
	}
	for _, lv := range []int{5, 6} {
		g, _ := gzip.NewWriterLevel(nil, lv)
		cs = append(cs, codec{fmt.Sprintf("gzip %d", lv), g, g.Reset})
	}
	return cs
}

func fit(b []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, b[:min(len(b), n-len(out))]...)
	}
	return out
}

func main() {
	html, _ := os.ReadFile("/usr/share/doc/python3/python-policy.html")
	js, _ := os.ReadFile("/usr/share/javascript/jquery/jquery.js")
	type item struct {
		ID    int      `json:"id"`
		Name  string   `json:"name"`
		Email string   `json:"email"`
		Tags  []string `json:"tags"`
		Score float64  `json:"score"`
		Live  bool     `json:"active"`
	}
	var items []item
	for i := range 20000 {
		items = append(items, item{i, fmt.Sprintf("user %d", i*7919%10007), fmt.Sprintf("u%d@example.com", i*31%9973), []string{"a", "beta", fmt.Sprint(i % 17)}, float64(i%1000) / 7, i%3 == 0})
	}
	jsn, _ := json.Marshal(items)
	corpora := []struct {
		name string
		b    []byte
	}{{"html", html}, {"json", jsn}, {"js", js}}
	fmt.Println("| input | size | codec | CPU ms per MB | output / input |")
	fmt.Println("|---|---|---|---|---|")
	for _, c := range corpora {
		for _, size := range []int{4 << 10, 64 << 10, 256 << 10, 1 << 20} {
			if size > len(c.b) {
				continue // a repeated input would flatter the large-window codecs
			}
			in := fit(c.b, size)
			for _, cd := range codecs() {
				var out bytes.Buffer
				once := func() {
					out.Reset()
					cd.rst(&out)
					cd.w.Write(in)
					cd.w.Close()
				}
				once() // warm
				// This thread's CPU time, not wall time: the box is shared,
				// and other engineers' load must not count.
				runtime.LockOSThread()
				start, n := threadCPU(), 0
				for threadCPU()-start < 200*time.Millisecond {
					once()
					n++
				}
				used := threadCPU() - start
				runtime.UnlockOSThread()
				msPerMB := float64(used) / 1e6 / float64(n) * float64(1<<20) / float64(len(in))
				fmt.Printf("| %s | %d KiB | %s | %.2f | %.3f |\n", c.name, size>>10, cd.name, msPerMB, float64(out.Len())/float64(len(in)))
			}
		}
	}
}

// threadCPU is the calling thread's user+system CPU time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// goldenSep separates a golden file's input from its expected output.
const goldenSep = "----------\n"

// goldenCase is one golden file: a TOML document whose comments may say
//
//	# env: BULWARK_X=value   (an environment variable; repeatable)
//	# machine: box512mib      (a fixture under testdata/machines; default box1500mib)
//	# nofile                  (load without a file: environment only)
type goldenCase struct {
	input, want string
	env         []string
	machine     string
	noFile      bool
}

func readGolden(t *testing.T, path string) goldenCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in, want, ok := strings.Cut(string(data), goldenSep)
	if !ok {
		t.Fatalf("%s: no %q separator", path, strings.TrimSpace(goldenSep))
	}
	gc := goldenCase{input: in, want: want, machine: "box1500mib"}
	for line := range strings.Lines(in) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "# env: "):
			gc.env = append(gc.env, strings.TrimPrefix(line, "# env: "))
		case strings.HasPrefix(line, "# machine: "):
			gc.machine = strings.TrimPrefix(line, "# machine: ")
		case line == "# nofile":
			gc.noFile = true
		}
	}
	return gc
}

// loadGolden writes the case's input to bulwark.toml in a temporary
// directory and loads it on the case's machine fixture. Output mentioning
// the directory is rewritten to name the file alone.
func loadGolden(t *testing.T, gc goldenCase) (*Config, error, func(string) string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "bulwark.toml")
	if err := os.WriteFile(path, []byte(gc.input), 0o600); err != nil {
		t.Fatal(err)
	}
	if gc.noFile {
		path = ""
	}
	machine := filepath.Join("testdata", "machines", gc.machine)
	c, err := Load(LoadOptions{
		Path:     path,
		Environ:  gc.env,
		ProcRoot: filepath.Join(machine, "proc"),
		SysRoot:  filepath.Join(machine, "sys"),
	})
	clean := func(s string) string { return strings.ReplaceAll(s, dir+string(filepath.Separator), "") }
	return c, err, clean
}

func checkGolden(t *testing.T, path string, gc goldenCase, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(gc.input+goldenSep+got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != gc.want {
		t.Errorf("%s: got\n%s\nwant\n%s", path, got, gc.want)
	}
}

func goldenFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in testdata/%s: %v", dir, err)
	}
	return files
}

// TestGoldenErrors loads each testdata/errors file and compares the full
// list of problems, one per line ("ok" when there are none), and warnings.
func TestGoldenErrors(t *testing.T) {
	for _, f := range goldenFiles(t, "errors") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			gc := readGolden(t, f)
			c, err, clean := loadGolden(t, gc)
			var b strings.Builder
			if err == nil {
				b.WriteString("ok\n")
			}
			for _, e := range Errors(err) {
				b.WriteString(clean(e.Error()) + "\n")
			}
			for _, w := range c.Warnings {
				b.WriteString("warning: " + w + "\n")
			}
			checkGolden(t, f, gc, b.String())
		})
	}
}

// TestGoldenRender loads each testdata/render file, which must be valid,
// and compares Render's output.
func TestGoldenRender(t *testing.T) {
	for _, f := range goldenFiles(t, "render") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			gc := readGolden(t, f)
			c, err, clean := loadGolden(t, gc)
			if err != nil {
				t.Fatalf("Load(%s) = %v, want no error", f, err)
			}
			checkGolden(t, f, gc, clean(c.Render()))
		})
	}
}

package bytesize

import "testing"

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1500, "1500B"},
		{2000, "2KB"},
		{1 << 10, "1KiB"},
		{20 << 20, "20MiB"},
		{5 << 30, "5GiB"},
		{3 << 40, "3TiB"},
		{50e6, "50MB"},
		{(1 << 20) + 1, "1048577B"},
	} {
		if got := Format(tt.n); got != tt.want {
			t.Errorf("Format(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

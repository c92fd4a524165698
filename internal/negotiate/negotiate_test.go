package negotiate

import "testing"

func TestEncodingQ(t *testing.T) {
	for _, tt := range []struct {
		header, coding string
		want           float64
	}{
		{"", "gzip", 0},
		{"gzip", "gzip", 1},
		{"GZIP", "gzip", 1},
		{"br;q=0.9, gzip;q=0.5", "gzip", 0.5},
		{"gzip;q=0", "gzip", 0},
		{"*;q=0.3", "zstd", 0.3},
		{"*;q=0.3, zstd;q=0", "zstd", 0},
		{"deflate", "gzip", 0},
		{"gzip; Q=0.2", "gzip", 0.2},
	} {
		if got := EncodingQ(tt.header, tt.coding); got != tt.want {
			t.Errorf("EncodingQ(%q, %q) = %v, want %v", tt.header, tt.coding, got, tt.want)
		}
	}
}

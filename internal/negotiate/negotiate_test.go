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

// TestEncodingQsAgreesWithEncodingQ: one read of the header gives each
// coding the weight EncodingQ gives it alone.
func TestEncodingQsAgreesWithEncodingQ(t *testing.T) {
	codings := []string{"br", "zstd", "gzip"}
	for _, header := range []string{
		"", "gzip", "br;q=0.9, gzip;q=0.5", "*;q=0.3, zstd;q=0", "gzip;q=0.2, gzip;q=0.9", "zstd, *;q=0.1", "GZIP; Q=0.4, br",
	} {
		var q [3]float64
		EncodingQs(header, codings, q[:])
		for i, c := range codings {
			if want := EncodingQ(header, c); q[i] != want {
				t.Errorf("EncodingQs(%q)[%s] = %v, want %v (EncodingQ)", header, c, q[i], want)
			}
		}
	}
	var q [3]float64
	EncodingQs("gzip;q=0.2, gzip;q=0.9, *;q=0.1", codings, q[:])
	if q != [3]float64{0.1, 0.1, 0.2} {
		t.Errorf("EncodingQs = %v; want [0.1 0.1 0.2] (the first gzip entry counts)", q)
	}
}

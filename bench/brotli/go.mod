module bulwark/bench/brotli

go 1.25

require (
	github.com/andybalholm/brotli v1.3.0
	github.com/klauspost/compress v1.20.5
)

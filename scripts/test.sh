#!/usr/bin/env bash
# Runs Bulwark's whole test suite on a Debian machine with Go, installing what
# the tests need from Debian's packages first (as root, or through sudo):
# uvicorn and FastAPI for the end-to-end tests against a real app, Chromium for
# the dashboard test, MariaDB and PostgreSQL for the database probe, iproute2
# for ss, nginx, HAProxy and Caddy to validate the benchmark's peer configs;
# h2spec, the HTTP/2 conformance suite, and Pebble, Let's Encrypt's test CA,
# built through the Go module proxy.
#
#   scripts/test.sh            vet, race tests, each fuzz target briefly (FUZZTIME),
#                              benchmarks compiled and run briefly
#   scripts/test.sh -short     skips the slowest end-to-end tests
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
/usr/bin/python3 -c 'import uvicorn' 2>/dev/null || need+=(python3-uvicorn)
/usr/bin/python3 -c 'import fastapi' 2>/dev/null || need+=(python3-fastapi)
command -v chromium >/dev/null || need+=(chromium)
command -v ss >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v mariadbd >/dev/null || command -v mysqld >/dev/null || need+=(mariadb-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The benchmark's peer configs are validated by the peers themselves.
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v caddy >/dev/null || need+=(caddy)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  # Packages must not start system-wide services: the tests start their own.
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    made_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ -z "$made_policy" ] || $sudo rm -f "$policy"
fi

# h2spec is a Go program: built once into the Go bin directory, at a pinned
# version. internal/h2's TestH2Spec runs it against the HTTP/2 server.
h2spec_version=v2.2.1+incompatible
H2SPEC="$(go env GOPATH)/bin/h2spec"
if [ ! -x "$H2SPEC" ]; then
  echo "installing: h2spec $h2spec_version (go install)"
  go install "github.com/summerwind/h2spec/cmd/h2spec@$h2spec_version"
fi
export H2SPEC

# Pebble, Let's Encrypt's test CA, and pebble-challtestsrv, its DNS server:
# Go programs too, at a pinned version. e2e's TestACME* obtain certificates
# from them over real http-01 and tls-alpn-01 validation, offline.
pebble_version=v2.10.3
PEBBLE="$(go env GOPATH)/bin/pebble"
PEBBLE_CHALLTESTSRV="$(go env GOPATH)/bin/pebble-challtestsrv"
if [ ! -x "$PEBBLE" ] || [ ! -x "$PEBBLE_CHALLTESTSRV" ]; then
  echo "installing: pebble $pebble_version (go install)"
  go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$pebble_version" \
    "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@$pebble_version"
fi
export PEBBLE PEBBLE_CHALLTESTSRV

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then
  echo "gofmt would change:"; echo "$bad"; exit 1
fi
echo "== go mod tidy"
# go.mod must say what the code imports, no more: a require nothing uses,
# or a direct one marked indirect, fails here.
if ! go mod tidy -diff; then
  echo "go mod tidy would change go.mod/go.sum (diff above)"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 15m "$@" ./...
echo "== fuzz (each target briefly; their seed corpora ran above as ordinary tests)"
# go test takes one -fuzz target per run. A failure leaves its input under
# the package's testdata/fuzz/<Target>/, which then runs as a seed.
# Each target runs a number of executions, about what 8 s gives it on this
# machine, not a duration: with a duration Go's fuzz coordinator (up to
# Go 1.26) can report its own deadline as a failure, "context deadline
# exceeded" with no failing input, when a worker is mid-input as the time
# runs out (go.dev/issue/75804). A count has no deadline to race. FUZZTIME
# overrides every target's budget, e.g. FUZZTIME=60s for a longer local run.
for target in \
  internal/h1:FuzzParseHead:200000x \
  internal/front:FuzzRequestFraming:100000x \
  internal/front:FuzzChunkedBody:40000x \
  internal/h2:FuzzH2Frames:8000x \
  internal/h2:FuzzH2VerdictMatchesXNet:8000x \
  internal/proxy:FuzzReadResponse:100000x; do
  IFS=: read -r pkg name budget <<<"$target"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME:-$budget}" -timeout 5m "./$pkg/"
done
echo "== benchmarks (compiled and run briefly; numbers are not judged here)"
go test -run '^$' -bench . -benchtime=100x -timeout 10m ./... >/tmp/bulwark-bench.txt
grep -E '^(ok|FAIL|Benchmark)' /tmp/bulwark-bench.txt | tail -n 40

#!/usr/bin/env bash
# Bulwark's benchmark against nginx, HAProxy, Caddy and uvicorn: the one command.
#
#   bench/run.sh                 full run: 3 runs of everything (~20-25 min on 2 cores)
#   bench/run.sh --quick         1 run, smaller N, shorter loads (development)
#   bench/run.sh --runs 5 --only idle,load
#   bench/run.sh pool            the worker pool against nginx + gunicorn (bench/pool.sh)
#
# It installs the peers from Debian's packages when missing (services kept from
# starting), builds Bulwark and the bench tool, raises the fd limit, runs
# `bulwarkbench suite` and prints the markdown table it writes to
# bench/results/<date>.md. Every option is passed on to `bulwarkbench suite`
# (run `go run ./bench/cmd/bulwarkbench suite -h` for the list).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
# `bench/run.sh pool [options]`: the pool benchmark against nginx +
# gunicorn (bench/pool.sh, bench/README.md).
if [ "${1:-}" = pool ]; then
	shift
	exec "$BENCH/pool.sh" "$@"
fi
WORK=$(mktemp -d /tmp/bulwarkbench.XXXXXX)
chmod 755 "$WORK" # nginx workers (user nobody) reach their temp dirs inside
SUITE_PID=

cleanup() {
	# Stop only what this script started, by PID. The suite stops its own
	# children (proxies, backends, uvicorn) by PID on SIGTERM.
	if [ -n "$SUITE_PID" ] && kill -0 "$SUITE_PID" 2>/dev/null; then
		kill -TERM "$SUITE_PID" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$SUITE_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$SUITE_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
command -v haproxy >/dev/null || need_pkgs+=(haproxy)
command -v caddy >/dev/null || need_pkgs+=(caddy)
command -v h2load >/dev/null || need_pkgs+=(nghttp2-client)
/usr/bin/python3 -c 'import uvicorn' 2>/dev/null || need_pkgs+=(python3-uvicorn)
/usr/bin/python3 -c 'import fastapi' 2>/dev/null || need_pkgs+=(python3-fastapi)

if [ ${#need_pkgs[@]} -gt 0 ]; then
	echo "bench: installing ${need_pkgs[*]}" >&2
	SUDO=
	[ "$(id -u)" = 0 ] || SUDO=sudo
	# Keep apt from starting nginx/haproxy/caddy services: they would take
	# ports 80/443 and run beside the benchmark. Restore any existing policy.
	POLICY=/usr/sbin/policy-rc.d
	saved=
	if [ -e "$POLICY" ]; then saved=$WORK/policy-rc.d.saved; $SUDO cp -p "$POLICY" "$saved"; fi
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
	$SUDO chmod 755 "$POLICY"
	restore_policy() { if [ -n "$saved" ]; then $SUDO cp -p "$saved" "$POLICY"; else $SUDO rm -f "$POLICY"; fi; }
	if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"; }; then
		restore_policy
		echo "bench: apt-get install failed" >&2
		exit 1
	fi
	restore_policy
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		for s in nginx haproxy caddy; do $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true; done
	fi
fi

# 5000 idle connections per test, on both ends of loopback.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "bench: building bulwark and the bench tools" >&2
cd "$ROOT"
go build -o "$WORK/bulwark" ./cmd/bulwark
go build -o "$WORK/bulwarkprof" ./bench/cmd/bulwarkprof
go build -o "$WORK/bulwarkbench" ./bench/cmd/bulwarkbench

mkdir -p "$BENCH/results"
out=$BENCH/results/$(date +%Y-%m-%d-%H%M).md
"$WORK/bulwarkbench" suite --bench-dir "$BENCH" --bulwark "$WORK/bulwark" \
	--bulwark-prof "$WORK/bulwarkprof" --work "$WORK/run" --out "$out" "$@" &
SUITE_PID=$!
wait "$SUITE_PID"
SUITE_PID=
echo "bench: results in $out" >&2

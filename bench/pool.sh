#!/usr/bin/env bash
# The pool benchmark (issue 17): Bulwark running the FastAPI app of
# bench/app as N workers, against nginx in front of
# `gunicorn -k uvicorn.workers.UvicornWorker -w N`, in one run, on an
# endpoint that burns 5 ms of CPU (GET /cpu). Run it under the shared
# benchmark lock, so no two benchmarks overlap:
#
#   flock /tmp/bench.lock bench/pool.sh               # 2 runs, ~6 minutes on 2 cores
#   flock /tmp/bench.lock bench/run.sh pool --runs 1  # the same, through run.sh
#
# Options:
#   --runs R              runs of every measurement, interleaved (2)
#   --duration S          seconds of load per measurement (12)
#   --workers 1,2,4       pool sizes of the throughput rows
#   --clients C           h2load clients of the throughput rows (8)
#   --recycle-workers N   pool size of the recycling rows (2)
#   --recycle-clients C   h2load clients of the recycling rows (4)
#   --max-requests M      max_requests / --max-requests of the recycling rows (300)
#   --jitter J            max_requests_jitter / --max-requests-jitter (50)
#   --only LIST           throughput,recycle (both)
#   --port P              the TLS front's port (8443); gunicorn listens on --upstream-port (8002)
#
# It needs nginx, h2load (nghttp2-client), Debian's python3-uvicorn,
# python3-fastapi and python3-gunicorn, and Go. Memory is read by the shared
# harness's procmem (/work/shared/bench/tools, or SHARED_BENCH=dir), built
# into the work directory. The table goes to the terminal and, with every
# per-run value, to bench/results/pool-<date>.md (not committed).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
SHARED=${SHARED_BENCH:-/work/shared/bench}
PY=/usr/bin/python3
RUNS=2 DUR=12 WORKERS=1,2,4 CLIENTS=8 RW=2 RC=4 MAXREQ=300 JITTER=50 ONLY=throughput,recycle
PORT=8443 UPORT=8002
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift ;;
	--duration) DUR=$2; shift ;;
	--workers) WORKERS=$2; shift ;;
	--clients) CLIENTS=$2; shift ;;
	--recycle-workers) RW=$2; shift ;;
	--recycle-clients) RC=$2; shift ;;
	--max-requests) MAXREQ=$2; shift ;;
	--jitter) JITTER=$2; shift ;;
	--only) ONLY=$2; shift ;;
	--port) PORT=$2; shift ;;
	--upstream-port) UPORT=$2; shift ;;
	*) sed -n '2,26p' "$0" >&2; exit 2 ;;
	esac
	shift
done

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v h2load >/dev/null || missing+=(nghttp2-client)
$PY -c 'import uvicorn' 2>/dev/null || missing+=(python3-uvicorn)
$PY -c 'import fastapi' 2>/dev/null || missing+=(python3-fastapi)
$PY -c 'import gunicorn' 2>/dev/null || missing+=(python3-gunicorn)
if [ ${#missing[@]} -gt 0 ]; then
	echo "pool bench: missing ${missing[*]}: apt-get install -y ${missing[*]}" >&2
	exit 1
fi
for p in "$PORT" "$UPORT"; do
	if ss -Htln "sport = :$p" | grep -q .; then
		echo "pool bench: port $p is in use" >&2
		exit 1
	fi
done

WORK=$(mktemp -d /tmp/poolbench.XXXXXX)
chmod 755 "$WORK" # nginx's worker (user nobody) reaches its temp dirs inside
PIDS=()           # roots of the stack running now, stopped by PID
stop_all() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "pool bench: building bulwark and procmem" >&2
(cd "$ROOT" && go build -o "$WORK/bulwark" ./cmd/bulwark)
(cd "$SHARED/tools" && go build -o "$WORK/procmem" ./procmem)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
ADMIN=127.0.0.1:$((PORT + 1))
URL=https://127.0.0.1:$PORT/cpu

# wait_for CMD...: retries CMD every 0.1 s for at most 60 s.
wait_for() {
	local end=$((SECONDS + 60))
	while [ $SECONDS -lt $end ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	return 1
}
ready_workers() { # the number of workers /status calls ready (one worker without recycling is the single app)
	curl -s --max-time 2 "http://$ADMIN/status" | $PY -c '
import json, sys
app = json.load(sys.stdin).get("app") or {}
ws = app.get("workers")
print(sum(w["state"] == "ready" for w in ws) if ws else int(app.get("state") == "ready"))'
}
all_ready() { [ "$(ready_workers)" = "$1" ]; }
startups() { grep -c "Application startup complete" "$1" || true; }
gunicorn_ready() { [ "$(startups "$WORK/gunicorn.log")" -ge "$1" ]; }

# start_bulwark N MAXREQ: Bulwark with N workers; MAXREQ 0 = no recycling.
start_bulwark() {
	local n=$1 maxreq=$2 jitter=0
	[ "$maxreq" = 0 ] || jitter=$JITTER
	cat >"$WORK/bulwark.toml" <<EOF
# bench/bulwark-stack.toml's settings, as a pool of workers.
profile = "medium"
[listen]
https = "127.0.0.1:$PORT"
keepalive_timeout = "120s"
max_conns = -1
max_conns_per_ip = -1
[tls]
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
[upstream]
keepalive = 32
max_concurrency = 1000
[limits]
rate_per_ip = "off"
spool_dir = "$WORK/spool"
[memory]
limit = "512MiB"
[log]
access = "off"
[admin]
listen = "$ADMIN"
[app]
dir = "$BENCH/app"
command = ["$PY", "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "{port}",
           "--loop", "asyncio", "--http", "h11", "--no-access-log", "--log-level", "warning"]
workers = $n
max_requests = $maxreq
max_requests_jitter = $jitter
EOF
	mkdir -p "$WORK/spool"
	setsid "$WORK/bulwark" run --config "$WORK/bulwark.toml" >"$WORK/bulwark.log" 2>&1 </dev/null &
	PIDS=($!)
	wait_for all_ready "$n" || { tail -20 "$WORK/bulwark.log" >&2; return 1; }
	MEMPIDS=${PIDS[0]}
}

# start_gunicorn N MAXREQ: nginx in front of gunicorn with N uvicorn workers.
start_gunicorn() {
	local n=$1 maxreq=$2 rec=()
	[ "$maxreq" = 0 ] || rec=(--max-requests "$maxreq" --max-requests-jitter "$JITTER")
	sed -e "s#{{.Run}}#$WORK#g" -e "s#{{.Spool}}#$WORK#g" -e "s#{{.UpstreamPort}}#$UPORT#g" \
		-e 's#{{if .MaxConns}}.*{{end}}##' -e "s#{{.Port}}#$PORT#g" \
		-e "s#{{.Cert}}#$WORK/cert.pem#g" -e "s#{{.Key}}#$WORK/key.pem#g" \
		"$BENCH/conf/nginx.conf.tmpl" >"$WORK/nginx.conf"
	: >"$WORK/gunicorn.log"
	# gunicorn logs at info only its workers' starts and recycles; uvicorn's
	# access log is off, as in Bulwark's workers.
	setsid $PY -m gunicorn -k uvicorn.workers.UvicornWorker -w "$n" -b "127.0.0.1:$UPORT" \
		--chdir "$BENCH/app" --log-level info "${rec[@]}" app:app >"$WORK/gunicorn.log" 2>&1 </dev/null &
	PIDS=($!)
	setsid nginx -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" >"$WORK/nginx.log" 2>&1 </dev/null &
	PIDS+=($!)
	wait_for gunicorn_ready "$n" || { tail -20 "$WORK/gunicorn.log" >&2; return 1; }
	wait_for curl -skf --max-time 2 "$URL?ms=0" || { cat "$WORK/nginx-error.log" >&2; return 1; }
	MEMPIDS=${PIDS[0]},${PIDS[1]}
}

# recycles STACK: a count that grows by one per recycle (Bulwark's counter,
# gunicorn's worker starts); measure takes the difference.
recycles() {
	if [ "$1" = bulwark ]; then
		curl -s --max-time 2 "http://$ADMIN/metrics" |
			awk '/^bulwark_app_recycles_total\{reason="max_requests"\}/ {print $2; f=1} END {if (!f) print 0}'
	else
		# uvicorn's worker exits at its limit without a word; the arbiter
		# logs every worker it starts.
		grep -c "Booting worker with pid" "$WORK/gunicorn.log" || true
	fi
}

RESULTS=$WORK/results.tsv
printf 'run\tscenario\tstack\tworkers\tmax_requests\tclients\trecycles\trss_kb\tpss_kb\th2load\tlog\n' >"$RESULTS"

# measure RUN SCENARIO STACK N MAXREQ C: one fresh stack, a warm-up, the
# load, the stack's memory right after it, then the stack is stopped.
measure() {
	local run=$1 scen=$2 stack=$3 n=$4 maxreq=$5 c=$6
	local tag=$scen-$stack-w$n-m$maxreq-r$run
	echo "[$(date +%T)] $tag" >&2
	"start_$stack" "$n" "$maxreq"
	timeout -k 5 60 h2load --h1 -n $((50 * c)) -c "$c" "$URL" >/dev/null 2>&1 || true
	local r0 mem out=$WORK/$tag.h2load log=$WORK/$tag.log
	r0=$(recycles "$stack")
	timeout -k 5 $((DUR + 60)) h2load --h1 -c "$c" -m 1 -t 1 -D "$DUR" --log-file "$log" "$URL" >"$out" 2>&1 || true
	mem=$("$WORK/procmem" -pid "$MEMPIDS")
	local r1 rss pss
	r1=$(recycles "$stack")
	rss=$(sed -n 's/.*rss_kb=\([0-9]*\).*/\1/p' <<<"$mem")
	pss=$(sed -n 's/.*pss_kb=\([0-9]*\).*/\1/p' <<<"$mem")
	stop_all
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$scen" "$stack" "$n" "$maxreq" "$c" \
		$((r1 - r0)) "$rss" "$pss" "$out" "$log" >>"$RESULTS"
}

for run in $(seq "$RUNS"); do
	if [[ ,$ONLY, == *,throughput,* ]]; then
		for n in ${WORKERS//,/ }; do
			for stack in bulwark gunicorn; do measure "$run" throughput "$stack" "$n" 0 "$CLIENTS"; done
		done
	fi
	if [[ ,$ONLY, == *,recycle,* ]]; then
		for maxreq in 0 "$MAXREQ"; do
			for stack in bulwark gunicorn; do measure "$run" recycle "$stack" "$RW" "$maxreq" "$RC"; done
		done
	fi
done

mkdir -p "$BENCH/results"
outfile=$BENCH/results/pool-$(date +%Y-%m-%d-%H%M).md
{
	echo "# bench/pool.sh at $(cd "$ROOT" && git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "runs $RUNS, $DUR s each; throughput: workers $WORKERS, $CLIENTS clients; recycling: $RW workers," \
		"$RC clients, max_requests $MAXREQ jitter $JITTER; $(nproc) CPUs; $(nginx -v 2>&1); gunicorn" \
		"$($PY -c 'import gunicorn; print(gunicorn.__version__)'); uvicorn $($PY -c 'import uvicorn; print(uvicorn.__version__)')"
	echo
	$PY "$BENCH/pool_report.py" "$RESULTS" "$DUR"
} | tee "$outfile"
echo "pool bench: results in $outfile" >&2

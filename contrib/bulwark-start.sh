#!/bin/sh
# bulwark-start.sh: run Bulwark without systemd (cPanel "Setup Python App",
# shared hosting, a cron @reboot entry).
#
#   bulwark-start.sh [start]   start in the background unless already running
#   bulwark-start.sh stop      drain requests, stop the app, exit (SIGTERM)
#   bulwark-start.sh restart   zero-downtime: start the (new) binary and hand it
#                              the sockets (SIGUSR2 = `bulwark upgrade`); starts
#                              Bulwark if it is not running
#   bulwark-start.sh reload    re-read the config and certificates (SIGHUP)
#   bulwark-start.sh status    exit 0 when running, 3 when not
#
# Settings come from the environment, else from the defaults below:
#   BULWARK_BIN      the binary              ($HOME/bin/bulwark, else bulwark on PATH)
#   BULWARK_HOME     pid file and log        ($HOME/bulwark)
#   BULWARK_CONFIG   the config file         ($BULWARK_HOME/bulwark.toml)
#   BULWARK_APP_DIR  working directory       ($HOME)
#   BULWARK_PIDFILE  written by Bulwark when it serves ($BULWARK_HOME/bulwark.pid)
#   BULWARK_LOG      stdout and stderr       ($BULWARK_HOME/bulwark.log)
#
# Start at boot with `crontab -e`:
#   @reboot /home/USER/bulwark/bulwark-start.sh start
# and, to restart it should it ever die:
#   */5 * * * * /home/USER/bulwark/bulwark-start.sh start >/dev/null 2>&1

set -u

BULWARK_HOME=${BULWARK_HOME:-$HOME/bulwark}
if [ -z "${BULWARK_BIN:-}" ]; then
	if [ -x "$HOME/bin/bulwark" ]; then
		BULWARK_BIN=$HOME/bin/bulwark
	else
		BULWARK_BIN=$(command -v bulwark || echo "$HOME/bin/bulwark")
	fi
fi
BULWARK_CONFIG=${BULWARK_CONFIG:-$BULWARK_HOME/bulwark.toml}
BULWARK_APP_DIR=${BULWARK_APP_DIR:-$HOME}
BULWARK_PIDFILE=${BULWARK_PIDFILE:-$BULWARK_HOME/bulwark.pid}
BULWARK_LOG=${BULWARK_LOG:-$BULWARK_HOME/bulwark.log}

# How long to wait, in seconds, for Bulwark to serve after a start or an
# upgrade, and to exit after SIGTERM (drain + the app's stop_timeout).
START_WAIT=${BULWARK_START_WAIT:-60}
STOP_WAIT=${BULWARK_STOP_WAIT:-45}

# Poll five times a second where sleep takes fractions (GNU, busybox),
# else once a second.
if sleep 0.0 2>/dev/null; then
	NAP=0.2 TICKS=5
else
	NAP=1 TICKS=1
fi

say() { printf '%s\n' "bulwark-start: $*"; }
die() { printf '%s\n' "bulwark-start: $*" >&2; exit 1; }

# is_bulwark PID: the process exists and runs the Bulwark binary (a stale
# pid file may name a PID the system has since given to something else).
is_bulwark() {
	kill -0 "$1" 2>/dev/null || return 1
	args=$(ps -p "$1" -o args= 2>/dev/null) || return 1
	case $args in
	*"$(basename "$BULWARK_BIN")"*) return 0 ;;
	*) return 1 ;;
	esac
}

# running_pid: print the PID of the running Bulwark, or fail.
running_pid() {
	[ -r "$BULWARK_PIDFILE" ] || return 1
	pid=$(tr -dc '0-9' <"$BULWARK_PIDFILE")
	[ -n "$pid" ] || return 1
	is_bulwark "$pid" || return 1
	printf '%s\n' "$pid"
}

# wait_new_pid OLD: wait until the pid file names a running Bulwark other
# than OLD (empty OLD: any), print its PID.
wait_new_pid() {
	i=0
	while [ "$i" -lt $((START_WAIT * TICKS)) ]; do
		if pid=$(running_pid) && [ "$pid" != "$1" ]; then
			printf '%s\n' "$pid"
			return 0
		fi
		sleep "$NAP"
		i=$((i + 1))
	done
	return 1
}

do_start() {
	if pid=$(running_pid); then
		say "already running (pid $pid)"
		return 0
	fi
	[ -x "$BULWARK_BIN" ] || die "no executable at $BULWARK_BIN (set BULWARK_BIN)"
	[ -r "$BULWARK_CONFIG" ] || die "no config at $BULWARK_CONFIG (set BULWARK_CONFIG)"
	mkdir -p "$BULWARK_HOME" "$(dirname "$BULWARK_PIDFILE")" "$(dirname "$BULWARK_LOG")" ||
		die "cannot create $BULWARK_HOME"
	rm -f "$BULWARK_PIDFILE" # stale: its process is gone or is not Bulwark
	cd "$BULWARK_APP_DIR" || die "cannot enter $BULWARK_APP_DIR"
	umask 027
	# A new session (setsid) keeps a closing terminal from signalling it;
	# nohup covers systems without setsid.
	setsid=
	if command -v setsid >/dev/null 2>&1; then
		setsid=setsid
	fi
	printf '%s\n' "--- bulwark-start: starting $(date '+%Y-%m-%d %H:%M:%S')" >>"$BULWARK_LOG"
	$setsid nohup "$BULWARK_BIN" run --config "$BULWARK_CONFIG" --pid-file "$BULWARK_PIDFILE" \
		</dev/null >>"$BULWARK_LOG" 2>&1 &
	# Bulwark writes the pid file once it serves.
	if pid=$(wait_new_pid ""); then
		say "started (pid $pid), log: $BULWARK_LOG"
		return 0
	fi
	tail -n 20 "$BULWARK_LOG" >&2
	die "not serving after ${START_WAIT}s; see $BULWARK_LOG"
}

do_stop() {
	if ! pid=$(running_pid); then
		say "not running"
		return 0
	fi
	kill -TERM "$pid" || die "cannot signal pid $pid"
	i=0
	while [ "$i" -lt $((STOP_WAIT * TICKS)) ]; do
		if ! kill -0 "$pid" 2>/dev/null; then
			say "stopped (pid $pid)"
			return 0
		fi
		sleep "$NAP"
		i=$((i + 1))
	done
	say "pid $pid still running after ${STOP_WAIT}s: killing it (its app dies with it)"
	kill -KILL "$pid" 2>/dev/null
	rm -f "$BULWARK_PIDFILE"
	return 1
}

do_restart() {
	if ! old=$(running_pid); then
		do_start
		return
	fi
	kill -USR2 "$old" || die "cannot signal pid $old"
	if new=$(wait_new_pid "$old"); then
		say "upgraded: pid $old handed over to pid $new (pid $old drains and exits)"
		return 0
	fi
	die "no new process after ${START_WAIT}s; pid $old keeps serving; see $BULWARK_LOG"
}

do_reload() {
	pid=$(running_pid) || die "not running"
	kill -HUP "$pid" || die "cannot signal pid $pid"
	say "reload requested (pid $pid); an invalid config is refused: see $BULWARK_LOG"
}

do_status() {
	if pid=$(running_pid); then
		say "running (pid $pid)"
		return 0
	fi
	say "not running"
	return 3
}

case ${1:-start} in
start) do_start ;;
stop) do_stop ;;
restart | upgrade) do_restart ;;
reload) do_reload ;;
status) do_status ;;
*)
	printf '%s\n' "usage: $0 [start|stop|restart|reload|status]" >&2
	exit 2
	;;
esac

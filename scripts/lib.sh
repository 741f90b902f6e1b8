# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are read by the scripts that source it.)
# Shared functions for smoke.sh and load.sh: find (or build) the broker,
# start it on 127.0.0.1:0 in a temp dir, stop it, clean up, talk to it
# with nc. Needs only bash, coreutils, awk and nc (netcat-openbsd).
#
# Source it after setting PROG (the name used in messages); it sets
# REPO_ROOT. Callers run make_workdir, then install_traps, so that every
# exit (errors and signals included) stops the broker and removes $WORK.

# How long (seconds) the broker may take to print its port, and to exit
# after SIGTERM.
START_TIMEOUT=10
STOP_TIMEOUT=10

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

WORK=""          # temp dir, removed by cleanup
BROKER_PID=""    # set while a broker we started has not been reaped
BROKER_FD=""     # read end of the broker's stdout (a FIFO)
BROKER_DATA=""   # its --data-dir
BROKER_STDERR="" # its log
BROKER_PORT=""
NC_PIDS=()       # background nc clients not yet reaped

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  say "$*"
  exit 1
}

# usage_error MESSAGE: a bad command line; exit 2.
usage_error() {
  say "$*"
  printf 'Try %s -h\n' "$0" >&2
  exit 2
}

# check_nc: nc must be the OpenBSD one (we rely on -N).
check_nc() {
  command -v nc >/dev/null 2>&1 ||
    die "nc not found: install netcat-openbsd (apt-get install netcat-openbsd)"
  command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) not found"
}

# split_addr HOST:PORT: sets HOST and PORT ([::1]:9092 gives ::1 and 9092).
split_addr() {
  local addr=$1
  [[ $addr == *:* ]] || usage_error "--addr wants HOST:PORT, got '$addr'"
  HOST=${addr%:*}
  PORT=${addr##*:}
  HOST=${HOST#[}
  HOST=${HOST%]}
  [[ -n $HOST && $PORT =~ ^[0-9]+$ ]] || usage_error "--addr wants HOST:PORT, got '$addr'"
}

# make_workdir: a fresh temp dir in $WORK.
make_workdir() {
  WORK=$(mktemp -d -t "$PROG.XXXXXX")
}

# resolve_broker: sets BROKER to an executable broker. $BROKER if set;
# otherwise target/release/broker in the repository, built if missing.
resolve_broker() {
  if [[ -n ${BROKER:-} ]]; then
    [[ -f $BROKER && -x $BROKER ]] || die "BROKER=$BROKER is not an executable file"
    return 0
  fi
  local target=${CARGO_TARGET_DIR:-target}
  [[ $target == /* ]] || target=$REPO_ROOT/$target
  BROKER=$target/release/broker
  if [[ ! -x $BROKER ]]; then
    command -v cargo >/dev/null 2>&1 ||
      die "$BROKER is missing and cargo is not installed to build it (or set BROKER)"
    say "building $BROKER"
    (cd -- "$REPO_ROOT" && cargo build --release --bin broker) >&2 ||
      die "cargo build --release --bin broker failed"
    [[ -x $BROKER ]] || die "cargo build did not produce $BROKER"
  fi
}

# shellcheck disable=SC2120 # (callers may pass no arguments)
# start_broker [ARGS...]: starts $BROKER on 127.0.0.1:0 with data dir
# $WORK/data (plus ARGS) and waits (at most START_TIMEOUT s) for its
# "Broker started on HOST:PORT" line. Sets BROKER_PID, BROKER_PORT,
# BROKER_DATA, BROKER_STDERR.
start_broker() {
  BROKER_DATA=$WORK/data
  BROKER_STDERR=$WORK/broker.stderr
  local fifo=$WORK/broker.stdout rw line="" rc=0
  mkfifo "$fifo"
  # Open both ends here, before the fork, so no open blocks and the FIFO
  # always has a writer until the broker's stdout (a copy of $rw, which
  # is read-write so its open does not block on Linux) is the only one:
  # then EOF on $BROKER_FD means the broker has exited.
  exec {rw}<>"$fifo"
  exec {BROKER_FD}<"$fifo"
  rm -f -- "$fifo"
  "$BROKER" --addr 127.0.0.1:0 --data-dir "$BROKER_DATA" "$@" \
    >&"$rw" 2>"$BROKER_STDERR" {rw}>&- {BROKER_FD}<&- &
  BROKER_PID=$!
  exec {rw}>&-
  # Returns with the line, at EOF (the broker died), or at the timeout.
  IFS= read -r -t "$START_TIMEOUT" -u "$BROKER_FD" line || rc=$?
  if ((rc > 128)); then
    say "the broker printed no line within $START_TIMEOUT s"
    show_broker_log
    exit 1
  elif ((rc != 0)) && [[ -z $line ]]; then
    say "the broker exited (or closed its stdout) without printing its port"
    show_broker_log
    exit 1
  fi
  if [[ ! $line =~ ^Broker\ started\ on\ .*:([0-9]+)$ ]]; then
    say "unexpected first line from the broker: '$line'"
    show_broker_log
    exit 1
  fi
  BROKER_PORT=${BASH_REMATCH[1]}
}

# show_broker_log: the end of the broker's stderr, to ours.
show_broker_log() {
  if [[ -s ${BROKER_STDERR:-} ]]; then
    printf '%s: broker stderr (last lines):\n' "$PROG" >&2
    tail -n 20 -- "$BROKER_STDERR" >&2
  fi
}

# stop_broker: SIGTERM, then wait at most STOP_TIMEOUT s for it to exit
# (its stdout reaches EOF when it does), then SIGKILL. Sets BROKER_STATUS
# to its exit status (128+n if killed by signal n).
stop_broker() {
  BROKER_STATUS=""
  [[ -n $BROKER_PID ]] || return 0
  kill -TERM "$BROKER_PID" 2>/dev/null || true
  local i rc=0
  # The broker prints one line; anything more is drained, a bounded amount.
  for ((i = 0; i < 100; i++)); do
    IFS= read -r -t "$STOP_TIMEOUT" -u "$BROKER_FD" _ || {
      rc=$?
      break
    }
  done
  if ((rc > 128 || i == 100)); then
    say "the broker did not exit within $STOP_TIMEOUT s of SIGTERM; killing it"
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  if wait "$BROKER_PID"; then BROKER_STATUS=0; else BROKER_STATUS=$?; fi
  BROKER_PID=""
  exec {BROKER_FD}<&-
  BROKER_FD=""
}

# cleanup: the EXIT trap. Stops whatever is still running, removes $WORK.
cleanup() {
  local status=$? pid
  for pid in "${NC_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${NC_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  NC_PIDS=()
  if [[ -n $BROKER_PID ]]; then
    stop_broker 2>/dev/null || true
  fi
  if [[ -n $WORK ]]; then
    rm -rf -- "$WORK"
  fi
  exit "$status"
}

# install_traps: cleanup on exit, and exit (so cleanup runs) on signals.
install_traps() {
  trap cleanup EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# nc_run HOST PORT SECONDS: stdin to the broker, its replies to stdout;
# nc -N half-closes at end of input and exits when the broker closes.
# (In the background, run `timeout ... nc ...` itself rather than this
# function, so that $! is timeout's pid and killing it stops nc.)
nc_run() {
  timeout "$3" nc -N "$1" "$2"
}

# ping_broker HOST PORT: fails unless the broker answers PING with PONG.
ping_broker() {
  local reply err
  reply=$(printf 'PING\n' | nc_run "$1" "$2" 10 2>"$WORK/ping.stderr") || true
  err=$(head -c 300 -- "$WORK/ping.stderr")
  [[ $reply == PONG ]] || die "no broker answering at $1:$2 (PING got '$reply')${err:+: $err}"
}

# same_bytes FILE EXPECTED: whether FILE holds exactly the bytes EXPECTED.
same_bytes() {
  [[ "$(od -An -v -tx1 <"$1")" == "$(printf '%s' "$2" | od -An -v -tx1)" ]]
}

# show_lines LABEL < TEXT: each line quoted, so spaces and \r show up.
show_lines() {
  local line any=""
  while IFS= read -r line || [[ -n $line ]]; do
    any=1
    printf "  %-9s '%s'\n" "$1" "$line" >&2
  done
  [[ -n $any ]] || printf '  %-9s (nothing)\n' "$1" >&2
}

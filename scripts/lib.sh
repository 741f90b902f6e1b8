# Shared helpers for the scripts in this directory. Source it; needs bash,
# coreutils and nc (netcat-openbsd).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

need_nc() {
  command -v nc >/dev/null 2>&1 || die "nc not found; install netcat-openbsd"
}

# The broker binary: $BROKER, else target/release/broker (built if missing).
broker_bin() {
  local bin="${BROKER:-$ROOT/target/release/broker}"
  if [ ! -x "$bin" ]; then
    [ -z "${BROKER:-}" ] || die "BROKER=$bin is not executable"
    (cd "$ROOT" && cargo build --release --bin broker >&2) || die "cargo build failed"
  fi
  echo "$bin"
}

# start_broker DATA_DIR [ARGS...]: starts a broker on 127.0.0.1:0 and sets
# BROKER_PID and BROKER_ADDR (host:port). Its stderr goes to DATA_DIR.log.
start_broker() {
  local dir="$1"; shift
  local bin; bin="$(broker_bin)"
  local fifo; fifo="$(mktemp -u)"
  mkfifo "$fifo"
  "$bin" --addr 127.0.0.1:0 --data-dir "$dir" "$@" >"$fifo" 2>"$dir.log" &
  BROKER_PID=$!
  local line=""
  # The broker prints one line when it listens; read it with a time bound.
  if ! read -r -t 10 line <"$fifo"; then
    rm -f "$fifo"
    die "broker did not start; its log: $(cat "$dir.log" 2>/dev/null)"
  fi
  rm -f "$fifo"
  case "$line" in
    "Broker started on "*) BROKER_ADDR="${line#Broker started on }" ;;
    *) die "unexpected first line from broker: $line" ;;
  esac
}

# stop_broker: SIGTERM, then wait (bounded) and return its exit status.
stop_broker() {
  [ -n "${BROKER_PID:-}" ] || return 0
  kill -TERM "$BROKER_PID" 2>/dev/null || true
  local status=0
  wait "$BROKER_PID" || status=$?
  BROKER_PID=""
  return "$status"
}

# nc_send HOST:PORT: sends stdin, prints every reply, closes at end of input.
nc_send() {
  local host="${1%:*}" port="${1##*:}"
  timeout "${NC_TIMEOUT:-60}" nc -N "$host" "$port"
}

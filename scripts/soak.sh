#!/usr/bin/env bash
# Soak test: a real broker under a mix of clients and restarts, checked
# against a model. The work is done by the `soak` binary (src/bin/soak.rs);
# this builds it and the broker and runs it. See -h.
set -euo pipefail

PROG=soak
REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<USAGE
Usage: scripts/soak.sh [--minutes N] [--seconds N] [SOAK OPTIONS]

Starts a broker on 127.0.0.1:0 in a fresh temp dir and, for the given time
(default 1 minute), runs pipelined producers, long-polling FETCH readers,
SUBSCRIBE readers, committers, slow clients (a byte at a time) and abusive
ones (garbage, over-long lines, half-open connections, connect-and-close)
over topics with partitions, restarting the broker (SIGTERM and kill -9,
--fsync always and interval). Checks: every acknowledged message is read
back at its offset with its bytes (also after restarts), offsets are
contiguous, committed offsets never fall behind an acknowledged COMMITTED,
the broker's RSS stays under 64 MiB and the p99 of a PING on a fresh
connection under 100 ms. Prints one summary line ("soak: OK ...") and
exits 0, or lists the violations and exits 1.

Options:
  --minutes N, --seconds N  how long to run [default: 60 seconds]
  --seed N                  seed of the random choices [default: the clock]
  --max-rss-mib N           the RSS bound [default: 64]
  --max-ping-p99-ms N       the PING p99 bound [default: 100]
  -h, --help                print this help

Environment:
  BROKER   broker binary [default: target/release/broker, built]
  SOAK     soak binary [default: target/release/soak, built]
USAGE
}

args=()
seconds=60
while (($# > 0)); do
  case $1 in
  -h | --help)
    usage
    exit 0
    ;;
  --minutes | --seconds)
    (($# >= 2)) || { echo "$PROG: $1 needs a value" >&2; echo "Try $0 -h" >&2; exit 2; }
    [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "$PROG: $1: invalid value '$2'" >&2; echo "Try $0 -h" >&2; exit 2; }
    if [[ $1 == --minutes ]]; then seconds=$((60 * $2)); else seconds=$2; fi
    shift 2
    ;;
  --seed | --max-rss-mib | --max-ping-p99-ms)
    (($# >= 2)) || { echo "$PROG: $1 needs a value" >&2; echo "Try $0 -h" >&2; exit 2; }
    args+=("$1" "$2")
    shift 2
    ;;
  *)
    echo "$PROG: unexpected argument '$1'" >&2
    echo "Try $0 -h" >&2
    exit 2
    ;;
  esac
done

target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$REPO_ROOT/$target
if [[ -z ${BROKER:-} || -z ${SOAK:-} ]]; then
  command -v cargo >/dev/null 2>&1 || { echo "$PROG: cargo not found (or set BROKER and SOAK)" >&2; exit 1; }
  echo "$PROG: building the broker and the soak driver" >&2
  (cd -- "$REPO_ROOT" && cargo build --release --bin soak --bin broker) >&2
fi
BROKER=${BROKER:-$target/release/broker}
SOAK=${SOAK:-$target/release/soak}
for bin in "$BROKER" "$SOAK"; do
  [[ -x $bin ]] || { echo "$PROG: $bin is not an executable file" >&2; exit 1; }
done
exec "$SOAK" --broker "$BROKER" --seconds "$seconds" "${args[@]}"

#!/usr/bin/env bash
# Smoke test: produce two messages with nc, consume them back, check every
# reply, the log file and a clean exit on SIGTERM. See -h.
set -euo pipefail

PROG=smoke # used by lib.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

NC_TIMEOUT=10

usage() {
  cat <<EOF
Usage: scripts/smoke.sh [--addr HOST:PORT]

Starts a broker on 127.0.0.1:0 in a fresh temp dir, produces "hello" and
"world" with nc, consumes offsets 0, 1 and 2, and checks the exact replies,
the exact bytes of kafka_log.txt, and that the broker exits 0 on SIGTERM.
Prints "smoke: OK" and exits 0, or prints what differed and exits 1.

Options:
  --addr HOST:PORT  test an already-running broker instead: the two ACK
                    offsets must be consecutive and CONSUME of them must
                    return the messages (the log file is not checked)
  -h, --help        print this help

Environment:
  BROKER            broker binary [default: target/release/broker in the
                    repository, built with cargo if missing]

Needs bash, coreutils and nc (netcat-openbsd).
EOF
}

ADDR=""
while (($# > 0)); do
  case $1 in
  -h | --help)
    usage
    exit 0
    ;;
  --addr)
    (($# >= 2)) || usage_error "--addr needs a value"
    ADDR=$2
    shift 2
    ;;
  --addr=*)
    ADDR=${1#--addr=}
    shift
    ;;
  *) usage_error "unexpected argument '$1'" ;;
  esac
done

check_nc
FAILED=0

# expect WHAT FILE EXPECTED: compares bytes; on a difference shows both.
expect() {
  if ! same_bytes "$2" "$3"; then
    say "$1 differ"
    show_lines expected: <<<"${3%$'\n'}"
    show_lines got: <"$2"
    FAILED=1
  fi
}

# converse FILE REQUEST...: one nc connection; the replies go to FILE.
converse() {
  local out=$1
  shift
  if ! printf '%s\n' "$@" | nc_run "$HOST" "$PORT" "$NC_TIMEOUT" >"$out"; then
    say "nc to $HOST:$PORT failed or timed out (${NC_TIMEOUT} s) sending: $*"
    FAILED=1
  fi
}

make_workdir
install_traps

if [[ -z $ADDR ]]; then
  resolve_broker
  start_broker
  HOST=127.0.0.1
  PORT=$BROKER_PORT

  converse "$WORK/produce" 'PRODUCE hello' 'PRODUCE world'
  expect "replies to PRODUCE" "$WORK/produce" $'ACK offset:0\nACK offset:1\n'
  converse "$WORK/consume" 'CONSUME 0' 'CONSUME 1' 'CONSUME 2' 'PING'
  expect "replies to CONSUME" "$WORK/consume" \
    $'MESSAGE offset:0 hello\nMESSAGE offset:1 world\nNO_MESSAGE\nPONG\n'

  stop_broker
  if [[ $BROKER_STATUS != 0 ]]; then
    say "the broker exited with status $BROKER_STATUS after SIGTERM, not 0"
    show_broker_log
    FAILED=1
  fi
  log=$BROKER_DATA/kafka_log.txt
  if [[ -f $log ]]; then
    expect "bytes of kafka_log.txt" "$log" \
      $'offset:0 message:hello\noffset:1 message:world\n'
  else
    say "no $log"
    FAILED=1
  fi
else
  split_addr "$ADDR"
  converse "$WORK/produce" 'PRODUCE hello' 'PRODUCE world'
  first=""
  two_acks=$'^ACK offset:([0-9]+)\nACK offset:([0-9]+)$'
  if [[ "$(<"$WORK/produce")" =~ $two_acks ]]; then
    first=${BASH_REMATCH[1]}
    second=${BASH_REMATCH[2]}
    if ((10#$second != 10#$first + 1)); then
      say "ACK offsets $first and $second are not consecutive"
      FAILED=1
    fi
  else
    say "replies to PRODUCE are not two ACKs"
    show_lines expected: <<<$'ACK offset:<n>\nACK offset:<n+1>'
    show_lines got: <"$WORK/produce"
    FAILED=1
  fi
  if [[ -n $first ]]; then
    converse "$WORK/consume" "CONSUME $first" "CONSUME $second" 'PING'
    expect "replies to CONSUME" "$WORK/consume" \
      "MESSAGE offset:$first hello"$'\n'"MESSAGE offset:$second world"$'\n'"PONG"$'\n'
  fi
fi

if ((FAILED)); then
  say "FAILED"
  exit 1
fi
echo "smoke: OK"

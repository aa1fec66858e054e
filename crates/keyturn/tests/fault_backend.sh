#!/bin/sh
# A fault-injection secret backend for keyturn's tests (the library's tests/faults.rs and the
# CLI's tests/cli/{faults,leaks,abuse}.rs). Its only argument is a state directory:
#   mode       what this run does: absent or empty answers normally; see the cases below
#   store/H    the value of handle H; store/H.error makes H an error with that text; a handle
#              with neither is left out of the answer
#   echo       text the echo-* modes repeat (a value the test knows keyturn has seen)
#   gate       while it exists, the gate mode waits before answering
#   echo-answer  if it exists, every mode first repeats the whole answer on stderr (as a
#              backend tracing itself with `set -x` would)
#   pids       `leader PID` for every run, `child PID` for every process it leaves behind
#   runs       `start PID NS` / `end PID NS` lines of the slow mode (NS: realtime nanoseconds)
state=$1
echo "leader $$" >> "$state/pids"
mode=$(cat "$state/mode" 2>/dev/null)
input=$(cat)
list=$(printf '%s' "$input" | sed -e 's/.*"secrets":\[\([^]]*\)\].*/\1/' | tr ',' ' ' | tr -d '"')

# The normal answer; in the slow mode, handle `run` answers an error naming this run.
answer() {
  printf '{'
  sep=''
  for h in $list; do
    if [ "$mode" = slow ] && [ "$h" = run ]; then
      printf '%s"%s":{"value":null,"error":"run %s"}' "$sep" "$h" "$$"; sep=','
    elif [ -f "$state/store/$h.error" ]; then
      printf '%s"%s":{"value":null,"error":"%s"}' "$sep" "$h" "$(cat "$state/store/$h.error")"; sep=','
    elif [ -f "$state/store/$h" ]; then
      printf '%s"%s":{"value":"%s"}' "$sep" "$h" "$(cat "$state/store/$h")"; sep=','
    fi
  done
  printf '}'
}

if [ -f "$state/echo-answer" ]; then answer >&2; echo >&2; fi

case "$mode" in
  # Never answers: a grandchild keeps it waiting.
  hang) sleep 600 & echo "child $!" >> "$state/pids"; wait ;;
  # Answers in full and exits 0, but leaves a grandchild holding stdout open.
  grandchild) answer; sleep 600 & echo "child $!" >> "$state/pids"; exit 0 ;;
  # Leaves two descendants outside its process group's reach (one in a session of its own, one
  # orphaned by a double fork), then answers and exits 0 (escape) or hangs (escape-hang).
  escape|escape-hang)
    setsid sh -c 'echo "child $$" >> "$1/pids"; exec sleep 600' sh "$state" </dev/null >/dev/null 2>&1 &
    (sleep 600 </dev/null >/dev/null 2>&1 & echo "child $!" >> "$state/pids")
    while [ "$(grep -c child "$state/pids")" -lt 2 ]; do sleep 0.01; done
    if [ "$mode" = escape ]; then answer; else sleep 600; fi ;;
  # 100 MB on stdout.
  flood) head -c 100000000 /dev/zero | tr '\0' x ;;
  # A valid answer, then 100 MB on stderr.
  stderr-flood) answer; head -c 100000000 /dev/zero | tr '\0' x >&2 ;;
  # The first 17 bytes of the answer (inside the first value when its handle is one letter
  # and its value two characters or more), exit 0.
  partial) answer | head -c 17 ;;
  # A valid answer, a complaint on stderr, exit 1.
  exit1) answer; echo 'upstream refused the request' >&2; exit 1 ;;
  # The first 17 bytes of the answer, then SIGKILL.
  sigkill) answer | head -c 17; kill -9 $$ ;;
  # Bytes that are not UTF-8 inside the first handle's value, exit 0.
  binary) set -- $list; printf '{"%s":{"value":"\377\376 not utf-8"}}' "$1" ;;
  # Bytes that are not UTF-8 on stderr, exit 1.
  binary-stderr) printf 'broken \377\376 bytes\n' >&2; exit 1 ;;
  # Repeats a known value on stderr, exit 1.
  echo-stderr) printf 'lookup failed; the previous value was %s\n' "$(cat "$state/echo")" >&2; exit 1 ;;
  # Answers every handle with an error text that repeats a known value.
  echo-error)
    printf '{'
    sep=''
    for h in $list; do
      printf '%s"%s":{"value":null,"error":"rotation of %s failed"}' "$sep" "$h" "$(cat "$state/echo")"; sep=','
    done
    printf '}' ;;
  # Answers once the gate file is gone.
  gate) while [ -f "$state/gate" ]; do sleep 0.01; done; answer ;;
  # Takes at least 20 ms, logging when it started and ended.
  slow)
    echo "start $$ $(date +%s%N)" >> "$state/runs"
    sleep 0.02
    out=$(answer)
    echo "end $$ $(date +%s%N)" >> "$state/runs"
    printf '%s' "$out" ;;
  *) answer ;;
esac

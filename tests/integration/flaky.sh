# Issue 6: catch a flaky failure and keep it. `rec record --until-failure`
# reruns the program under recording, keeps the first failing run's trace and
# deletes the others; --chaos perturbs scheduling so races show up sooner;
# --timeout turns hangs into failures. Each kept trace replays the failure.
# shellcheck source=lib.bash
source "$TESTLIB"

# until_failure NAME [OPTIONS...] -- PROGRAM: expects a caught failure (exit 1).
until_failure() {
  local name=$1
  shift
  timeout -k 5 300 "$REC" record --until-failure -o "$name.rec" "$@" >"$name.uf.out" 2>"$name.uf.err"
  local status=$?
  [ "$status" -eq 1 ] || { show "until-failure stderr" "$name.uf.err"; fail "until-failure exited $status, expected 1 (failure caught)"; }
  [ -f "$name.rec" ] || fail "no trace kept at $name.rec"
  grep -q "FAILED" "$name.uf.err" || fail "no run reported as failed"
  grep -Eq "^rec: [0-9]+ runs?, 1 failure, .* kept in .*$name.rec" "$name.uf.err" ||
    { show "until-failure stderr" "$name.uf.err"; fail "no summary with runs, failures, time and the kept trace"; }
  # Only the failing run's trace is left.
  [ "$(ls | grep -c '\.rec')" -eq 1 ] || fail "passing runs' traces were not deleted: $(ls)"
  # The failing run's own output is what a replay must print.
  RUNS=$(sed -n 's/^rec: \([0-9]*\) runs\{0,1\}, 1 failure.*/\1/p' "$name.uf.err")
}

# Replays the kept trace twice: same output and status both times.
replays_fail() {
  local name=$1 expected=$2
  local i
  for i in 1 2; do
    timeout 60 "$REC" replay "$name.rec" >"$name.replay$i.out" 2>"$name.replay$i.err"
    local status=$?
    [ "$status" -eq "$expected" ] || { show "replay stderr" "$name.replay$i.err"; fail "replay $i exited $status, expected $expected"; }
  done
  cmp -s "$name.replay1.out" "$name.replay2.out" || fail "two replays printed different output"
}

check_abort_one_in_three() {
  expect_native_differs "$PROGRAMS/flaky_abort"
  until_failure abort --max-runs 40 -- "$PROGRAMS/flaky_abort"
  replays_fail abort 134
  grep -q "unlucky draw" abort.replay1.err || fail "replay does not show the program's own failure message"
  local draw
  draw=$(sed -n 's/^draw //p' abort.replay1.out)
  [ -n "$draw" ] && [ $((draw % 3)) -eq 0 ] || fail "the replayed draw '$draw' is not a failing one"
}

check_output_regex() {
  # The program exits 0 either way; only its output says it failed.
  until_failure regex --fail-output 'draw [0-9]*[05]$' --max-runs 60 -- "$PROGRAMS/flaky_abort"
  timeout 60 "$REC" replay regex.rec >regex.replay.out 2>&1
  grep -Eq 'draw [0-9]*[05]$' regex.replay.out || fail "the replayed output does not match the failure pattern"
}

check_chaos_race() {
  # Natively the race rarely bites: count it, for the record.
  local native=0 i
  for i in $(seq 20); do "$PROGRAMS/race" >/dev/null 2>&1 || native=$((native + 1)); done
  note "native runs: $native of 20 failed"
  until_failure race --chaos --max-runs 60 -- "$PROGRAMS/race"
  grep -q "chaos seed" race.uf.err || fail "the chaos seed is not printed"
  "$REC" info race.rec >info.out 2>&1
  grep -qi "chaos" info.out || { show info info.out; fail "rec info does not show the chaos seed"; }
  note "caught after $RUNS chaos run(s)"
  replays_fail race 134
  grep -q "lost update" race.replay1.err || fail "replay does not lose the update"
}

check_timeout_hang() {
  until_failure hang --timeout 1s --max-runs 40 -- "$PROGRAMS/flaky_hang"
  grep -q "killed after the timeout" hang.uf.err || fail "the hang is not reported as such"
  replays_fail hang 137
  grep -q "still waiting 0" hang.replay1.out || fail "replay does not reach the hang"
}

check_no_failure() {
  timeout 120 "$REC" record --until-failure --max-runs 3 -o ok.rec -- /bin/true >ok.out 2>ok.err
  local status=$?
  [ "$status" -eq 0 ] || fail "until-failure with no failing run exited $status, expected 0"
  [ ! -e ok.rec ] || fail "a trace was kept although no run failed"
  grep -q "^rec: 3 runs, no failure" ok.err || { show stderr ok.err; fail "no summary"; }
}

t abort_one_in_three check_abort_one_in_three
t output_regex check_output_regex
t chaos_race check_chaos_race
t timeout_hang check_timeout_hang
t no_failure check_no_failure
finish

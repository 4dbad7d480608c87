# Issue 3: sockets. A TCP client talking to a server on 127.0.0.1 is recorded;
# the server is then stopped and the client replays without it, printing the
# same reply. Replay must not connect anywhere.
# shellcheck source=lib.bash
source "$TESTLIB"

start_server() {  # start_server PORTFILE CONNECTIONS -> $SERVER_PID
  "$PROGRAMS/tcp_server" "$1" "$2" </dev/null >server.out 2>server.err &
  SERVER_PID=$!
  wait_for_file "$1" 10
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  return 0
}

check_tcp_client() {
  need_program tcp_client
  need_program tcp_server
  start_server port1 2
  expect_native_differs "$PROGRAMS/tcp_client" port1
  stop_server
  start_server port 1
  record tcp --status 0 --expect-out '^server said: reply to [0-9]+ bytes: random [0-9a-f]{32} ' \
    -- "$PROGRAMS/tcp_client" port
  stop_server
  # Nothing listens on the recorded port now: a client that really connected
  # would fail. Also hide the port file, which the client reads.
  rm -f port
  replay_compare tcp
}

# The server's side recorded too: record the server, drive it with a native
# client, replay the server alone (it must not listen or accept for real).
check_tcp_server() {
  need_program tcp_server
  timeout 60 "$REC" record -o server.rec -- "$PROGRAMS/tcp_server" sport 1 \
    </dev/null >server.rec.out 2>server.rec.err &
  local recpid=$!
  wait_for_file sport 20
  "$PROGRAMS/tcp_client" sport >client.out 2>&1 || fail "native client failed: $(cat client.out)"
  wait "$recpid"
  echo $? >server.rec.status
  [[ $(<server.rec.status) == 0 ]] || fail "recorded server exited $(<server.rec.status): $(head -c 300 server.rec.err)"
  rm -f sport
  replay_compare server
  [[ -e sport || -e sport.tmp ]] && fail "replay of the server created its port file again"
  return 0
}

t tcp_client check_tcp_client
t tcp_server check_tcp_server
finish

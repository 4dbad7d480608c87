#!/bin/bash
# Installs what rec needs to build and test, from Debian 12's packages only.
set -euo pipefail
packages=(
  cmake g++ make pkg-config             # build
  capnproto libcapnp-dev libzstd-dev    # trace format
  libxxhash-dev libcli11-dev libfmt-dev # checksums, command line, formatting
  libdw-dev                             # symbol names in divergence reports
  libcapstone-dev                       # x86 decoding for replay's conditional breakpoints
  catch2                                # unit tests
  gdb                                   # debugging replays (rec replay -d) and its tests
  python3 perl tar gzip findutils       # real programs the integration tests record
  sqlite3                               # SQLite in WAL mode (shared -shm mapping) under test
  golang-go nodejs openssl              # runtimes with threads and signals (tests/runtimes)
  openjdk-17-jdk-headless               # the JVM's threads, JIT and safepoints (tests/runtimes)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "rec: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

#!/bin/bash
# Quick start, step 2 (and what CI runs): build rec and run the whole test
# suite — unit tests and record/replay integration tests — through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh >/dev/null
cd build
ctest --output-on-failure -j2 "$@"

#!/bin/bash
# The test peer checks itself without a proxy, including that a flipped byte is caught: the other
# tests are only as good as its checks.
set -euo pipefail
exec "$(dirname "$0")/srpeer-selftest.sh"

#!/bin/bash
# Unit tests: BACKEND and --listen parsing, every accepted form and every rejected one.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
"$TOP/.output/test-address"

#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The earlier rough side-by-side is replaced by the benchmark; this runs its one-minute form.
# `make bench` runs the full one (bench/run.sh).
set -euo pipefail
QUICK=1 exec "$(dirname "$0")/run.sh" "$@"

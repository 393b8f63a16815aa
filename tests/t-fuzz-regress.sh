#!/bin/bash
# Every fuzz target runs once over its committed corpus and the reproducers of past findings
# (tests/fuzz/regressions/), built with ASan and UBSan: a finding that comes back fails here.
exec "$(dirname "$0")/fuzz/run.sh" regress

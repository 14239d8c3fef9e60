#!/usr/bin/env bash
# Rewrite constraints.txt: every package that `pip install ".[test]"` brings, at the newest release pip resolves
# today, from PyPI, in a fresh virtualenv (streamgd itself left out). The README's two commands install with
# `-c constraints.txt`, so CI (.ci/run) tests the same versions every day; the nightly job
# (.github/workflows/nightly.yml, "newest-releases") installs without it and shows drift first.
#
# Refresh on purpose: when pyproject.toml's dependencies change, or the nightly job is green on newer releases.
# Run `scripts/refresh_constraints.sh` (PYTHON=python3.11 to choose the interpreter), then `.ci/run`; commit
# constraints.txt only if that passes. A release that fails goes in a pin below instead (PINS="moto==5.2.5").
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086 # PINS: space-separated requirements, split on purpose
"$work/venv/bin/python" -m pip install --quiet ".[test]" ${PINS:-}
{
    echo "# Every package the install and the test extra bring, pinned to the versions CI tests: the README's"
    echo "# commands install with -c constraints.txt. Made by scripts/refresh_constraints.sh (read it for when and"
    echo "# how to refresh) on $(date -u +%Y-%m-%d) with $("$work/venv/bin/python" --version) on $(uname -sm)${PINS:+, pins: $PINS}."
    "$work/venv/bin/python" -m pip freeze --exclude streamgd
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"

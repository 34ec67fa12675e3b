#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then pytest.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Debian tools the tests drive for real: systemd-analyze verifies the rendered unit, headless
# Chromium renders the map page, shellcheck lints install.sh, kiwix-serve is the catalog server of the
# download tests (kiwix-manage writes its library.xml).
need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
{ command -v kiwix-serve && command -v kiwix-manage; } >/dev/null 2>&1 || need+=(kiwix-tools)
# OpenBLAS: the engine binds MLX's CPU matmuls to it (llm_engine/cpu_blas.py), as install.sh sets up.
{ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q 'libopenblas\.so\.0 ' || need+=(libopenblas0-pthread)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian packages: ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "note: missing ${need[*]}; the tests that need them will say so" >&2
    fi
fi

PY=${PYTHON:-python3}
VENV=${ALMANAC_TEST_VENV:-$ROOT/.venv-test}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"

# A wheelhouse (almanac's wheel + every dependency + build tools + MapLibre's npm tarball) so the
# installer test installs with no network at all, exactly as `install.sh --wheelhouse` promises. It is
# made by the installer's own --make-wheelhouse, for the test venv's Python. Should npm fail there, it
# says so and goes on: the tests that need MapLibre >= 5.11 then skip, naming the missing tarball.
export ALMANAC_WHEELHOUSE=${ALMANAC_WHEELHOUSE:-$ROOT/.wheelhouse}
bash "$ROOT/install.sh" --make-wheelhouse "$ALMANAC_WHEELHOUSE" --python "$VENV/bin/python"
if ! ls "$ALMANAC_WHEELHOUSE"/maplibre-gl-*.tgz >/dev/null 2>&1; then
    echo "note: no maplibre-gl-*.tgz in $ALMANAC_WHEELHOUSE (npm pack failed, see above): the MapLibre tarball and map label tests will skip" >&2
fi

# The linter and the formatter (config in pyproject.toml): a finding fails the run before any test starts.
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .

set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$rc"

# Sourced by scripts/test and scripts/demo: makes sure .venv exists and holds the
# project as pyproject.toml declares it. Reinstalls only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CALSYNC_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "calsync: creating virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

stamp="$VENV/.calsync-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "calsync: installing the project and its test extra into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
    # caldav (the test extra) brings niquests and urllib3-future, which writes its files over
    # urllib3's: take both out and put urllib3 back, as users' installs have it. caldav
    # falls back to requests.
    if "$VENV/bin/python" -m pip show --quiet urllib3-future >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip uninstall --quiet --yes niquests urllib3-future
        "$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps urllib3
    fi
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"

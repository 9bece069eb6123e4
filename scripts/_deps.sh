# Sourced by scripts/test after _venv.sh: the third-party mail clients the end-to-end
# suites drive, installed when missing (quietly; a no-op costing milliseconds when present).
# - DavMail: Debian's davmail-server (the headless half of the davmail package: the jar
#   and a JRE, without the GTK/SWT tray GUI). Installed with apt-get as root; otherwise
#   one line says so and tests/e2e/test_davmail.py skips (fails under CI=true).
# - ews-javascript-api: `npm ci` in tests/e2e/ews_js when its node_modules is missing or
#   package-lock.json changed since.
# - PostgreSQL's server, for the state tests (scripts/_postgres.sh).
# - Debian's Chromium, for the admin console's browser tests (scripts/_browser.sh).
# A failed install never stops the run here: the tests that need the client say why.

_deps_log="${TMPDIR:-/tmp}/calsync-deps.log"

_deps_apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >>"$_deps_log" 2>&1
}

_deps_apt() {  # apt-get install -y PACKAGE...; `apt-get update` first only if that fails
    if apt-cache show "$@" >/dev/null 2>&1 && _deps_apt_install "$@"; then
        return 0
    fi
    apt-get update -qq >>"$_deps_log" 2>&1 && _deps_apt_install "$@"
}

if [ ! -f /usr/share/davmail/davmail.jar ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "calsync: installing davmail-server (apt-get; log in $_deps_log)" >&2
        _deps_apt davmail-server \
            || echo "calsync: could not install davmail-server (see $_deps_log)" >&2
    else
        echo "calsync: DavMail is not installed (as root: apt-get install davmail-server)" >&2
    fi
fi

if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "calsync: installing nodejs and npm (apt-get; log in $_deps_log)" >&2
    _deps_apt nodejs npm || echo "calsync: could not install nodejs/npm (see $_deps_log)" >&2
fi

_ews_js="$ROOT/tests/e2e/ews_js"
if command -v npm >/dev/null; then
    _want="$(sha256sum "$_ews_js/package-lock.json" | cut -d' ' -f1)"
    _stamp="$_ews_js/node_modules/.calsync-installed"
    if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_want" ]; then
        echo "calsync: installing ews-javascript-api (npm ci in tests/e2e/ews_js)" >&2
        if (cd "$_ews_js" && npm ci --no-audit --no-fund --loglevel=error >>"$_deps_log" 2>&1); then
            echo "$_want" >"$_stamp"
        else
            echo "calsync: npm ci failed in tests/e2e/ews_js (see $_deps_log)" >&2
        fi
    fi
fi
source "$ROOT/scripts/_postgres.sh"
source "$ROOT/scripts/_browser.sh"
unset -f _deps_apt _deps_apt_install
unset _deps_log _ews_js _want _stamp

# Sourced by scripts/_deps.sh (which defines _deps_apt and _deps_log): Debian's Chromium and
# ChromeDriver, the browser tests/e2e/test_admin_browser.py drives through Playwright for
# Python (pyproject's test extra; pointed at /usr/bin/chromium, so Playwright's own browser
# download is never used). Installed as root when /usr/bin/chromium is missing; otherwise
# one line says so, and the browser tests skip (fail under CI=true).

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "calsync: installing chromium and chromium-driver (apt-get; log in $_deps_log)" >&2
        _deps_apt chromium chromium-driver \
            || echo "calsync: could not install chromium (see $_deps_log)" >&2
    else
        echo "calsync: Chromium is not installed (as root: apt-get install chromium chromium-driver)" >&2
    fi
fi

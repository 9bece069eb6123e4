# Sourced by scripts/_deps.sh (which defines _deps_apt and _deps_log): the PostgreSQL server
# the state tests start on their own (tests/sync/state/pg_server.py: initdb and pg_ctl in a
# temporary directory, on a free port). Installed from Debian's `postgresql` as root when no
# /usr/lib/postgresql/*/bin/initdb is there; otherwise one line says so, and the PostgreSQL
# tests skip (fail under CI=true).

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "calsync: installing postgresql (apt-get; log in $_deps_log)" >&2
        # the tests make their own servers: no cluster on port 5432 beside them
        mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/calsync.conf
        _deps_apt postgresql || echo "calsync: could not install postgresql (see $_deps_log)" >&2
    else
        echo "calsync: PostgreSQL is not installed (as root: apt-get install postgresql)" >&2
    fi
fi

#!/bin/sh
# Entrypoint of the sentinel containers in docker/compose.yml.
#
# Sentinel rewrites its config file (the replicas, sentinels and epochs it
# learns), so on the first start of a container the template is copied to
# its own writable file; later starts of the same container keep what that
# sentinel learned. Two lines are appended to the copy:
#   sentinel announce-ip  SENTINEL_ANNOUNCE_HOSTNAME, default the container's
#                         hostname (compose.yml sets it to the service name)
#   sentinel auth-pass    REDIS_PASSWORD, the primary's and replica's password;
#                         left out when empty. No spaces, quotes or
#                         backslashes: Sentinel writes it back unquoted when
#                         it rewrites the file, and would not start again.
# SENTINEL_TEMPLATE and SENTINEL_CONF move the two files.
set -eu
template=${SENTINEL_TEMPLATE:-/etc/redis-sentinel/sentinel.conf}
conf=${SENTINEL_CONF:-/data/sentinel.conf}

case "${REDIS_PASSWORD:-}" in
*[[:space:]\"\'\\]*)
    echo "entrypoint.sh: REDIS_PASSWORD must not contain spaces, quotes or backslashes" >&2
    exit 1
    ;;
esac

if [ ! -f "$conf" ]; then
    master=$(sed -n 's/^sentinel monitor \([^ ]*\) .*/\1/p' "$template")
    if [ -z "$master" ]; then
        echo "entrypoint.sh: no 'sentinel monitor' line in $template" >&2
        exit 1
    fi
    {
        cat "$template"
        echo
        echo "# Appended by entrypoint.sh"
        echo "sentinel announce-ip ${SENTINEL_ANNOUNCE_HOSTNAME:-$(hostname)}"
        if [ -n "${REDIS_PASSWORD:-}" ]; then
            printf 'sentinel auth-pass %s %s\n' "$master" "$REDIS_PASSWORD"
        fi
    } >"$conf"
fi

# The redis image's own entrypoint gives /data to the redis user and drops
# root before starting the server.
exec docker-entrypoint.sh redis-server "$conf" --sentinel

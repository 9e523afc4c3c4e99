#!/bin/bash
# Container healthcheck for the resp-sidecar image, installed as
# /usr/local/bin/resp-sidecar-healthcheck. The runtime image has no curl, so
# this sends one GET over bash's /dev/tcp and succeeds only on HTTP 200.
#
#   resp-sidecar-healthcheck [PATH] [HOST:PORT]
#
# PATH defaults to /readyz (200 only while a verified primary is reachable);
# HOST:PORT defaults to the admin.listen port of docker/sidecar.toml. Pass the
# address when the config or --admin moves the admin listener.
set -eu
path=${1:-/readyz}
addr=${2:-127.0.0.1:9121}
exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}"
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$addr" >&3
read -r -t 5 _version status _reason <&3
[ "$status" = 200 ]

#!/usr/bin/env bash
# Installs what bitville-apm's build, tests and demo need on a Debian machine,
# and nothing when everything is already there. Safe to run again and again.
#
#   scripts/deps.sh            # packages for build and tests
#
# Debian packages come from apt (after `apt-get update`); Go modules come
# through the Go module proxy when `go` first builds. VictoriaLogs, which
# Debian does not package, is built with `go install` into /usr/local/bin.
set -euo pipefail

packages=(
	ca-certificates
	gcc libc6-dev make git   # cgo: pg_query_go builds PostgreSQL's parser
	prometheus               # promtool checks; the real Prometheus of the end-to-end tests
	prometheus-node-exporter # host metrics (load, CPU) in the end-to-end tests and the demo
	# The PHP agent and the real stack its integration tests run:
	php8.2-cli php8.2-fpm php8.2-pgsql php8.2-mbstring
	php-excimer php-tideways phpunit
	nginx postgresql postgresql-contrib
	wrk                      # load for the overhead benchmarks
	valgrind                 # callgrind: instructions per request (make bench-php-instructions)
	prometheus-postgres-exporter # pg-exporter's side-by-side benchmark
	prometheus-pushgateway   # pushgw's side-by-side benchmark
	victoria-metrics         # a remote-write receiver of pushgw's tests
)

say() { printf 'deps: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi
if ! command -v go >/dev/null 2>&1; then
	say "Go is not installed: this project needs Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") or newer on PATH (or in /usr/local/go)."
	exit 1
fi

# VictoriaLogs (Apache-2.0): the Loki-compatible log store the raw-trace
# tests push to (internal/stack/victorialogs.go).
victoria_logs=github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.2
if [ ! -x /usr/local/bin/victoria-logs ]; then
	say "installing victoria-logs ($victoria_logs)"
	if [ -w /usr/local/bin ]; then
		GOBIN=/usr/local/bin go install "$victoria_logs"
	else
		gobin=$(mktemp -d)
		GOBIN="$gobin" go install "$victoria_logs"
		sudo install -m 755 "$gobin/victoria-logs" /usr/local/bin/victoria-logs
		rm -rf "$gobin"
	fi
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
	say "missing packages: ${missing[*]}; this script installs them only on Debian (apt-get). Install them by hand."
	exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		say "missing packages: ${missing[*]}; run this script as root (or install sudo) to install them."
		exit 1
	fi
fi

say "installing: ${missing[*]}"
# Packaged daemons (prometheus, php-fpm, nginx) must not start themselves on install: the
# tests start their own instances on free ports. policy-rc.d is Debian's
# switch for that; leave an existing one alone.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
say "done"

#!/usr/bin/env bash
# Throughput cost of the profiler through real nginx + php-fpm + PostgreSQL,
# measured with wrk on loopback.
#
#   sudo php/tests/Profiler/bench/fpm_bench.sh [rounds=5] [seconds=8] [periods_ms="10 1 20 2"]
#
# Starts, in a temp dir, a throwaway PostgreSQL cluster (unix socket only),
# one php-fpm master with identical pools (4 static workers each) and nginx
# in front, all on free ports; everything is stopped and removed at exit.
# Pools: `base` and `base2` (no prepend: the A/A control shows the noise),
# `empty` (an empty auto_prepend_file: what the mechanism itself costs),
# one `p<ms>` pool per period with an auto_prepend_file that only starts
# the profiler (ProfilerFactory 'excimer' + ProgressTimer at 5 s, as the
# agent does) and at shutdown stops it and json_encode()s the result, and
# `tw` (unless TIDEWAYS=0): the same with a tideways_xhprof call graph on
# every request (what sampled/forced requests cost).
# The endpoint: 4 SQL statements on a persistent PDO connection and ~6 ms of
# call-heavy PHP (about 10 ms per request). Each round runs wrk against every
# pool, in an order rotated per round; the report gives, per pool, the median
# req/s and the median of the per-round ratios to `base`, and the same for
# the CPU time its workers used per request (from /proc/<pid>/stat, all
# threads): less sensitive to other load on the machine than req/s.
# Must run as root (php-fpm -R; PostgreSQL runs as user postgres).
set -euo pipefail

ROUNDS=${1:-5}
SECS=${2:-8}
PERIODS_MS=${3:-"10 1 20 2"}
CONNS=${CONNS:-8}

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../../../src" && pwd)
PGBIN=/usr/lib/postgresql/15/bin
T=$(mktemp -d /tmp/bvbench.XXXXXX)
chmod 755 "$T"
PIDS=()

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    [ -f "$T/pg/postmaster.pid" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/pg" -m immediate stop >/dev/null 2>&1
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# --- PostgreSQL -------------------------------------------------------------
PGPORT=$(free_port)
mkdir -p "$T/pg" "$T/pgsock"
chown postgres "$T/pg" "$T/pgsock"
runuser -u postgres -- "$PGBIN/initdb" -D "$T/pg" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/pg" -l "$T/pg/log" -w \
    -o "-k $T/pgsock -p $PGPORT -c listen_addresses='' -c fsync=off -c max_connections=100" start >/dev/null
"$PGBIN/psql" -h "$T/pgsock" -p "$PGPORT" -U postgres -q -c "
    CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
    INSERT INTO items SELECT g, 'item ' || g, (g % 100) + 0.5 FROM generate_series(1, 20000) g;
    ANALYZE items;" postgres

# --- the application and the prepend file -----------------------------------
mkdir -p "$T/app"
cat > "$T/app/index.php" <<PHP
<?php
declare(strict_types=1);
function renderRow(array \$row): string { return sprintf('<tr><td>%d</td><td>%s</td><td>%.2f</td></tr>', \$row['id'], htmlspecialchars(\$row['name']), \$row['price']); }
function price(int \$i): float { return round(\$i * 1.19 + strlen((string) \$i), 2); }
function layout(int \$depth, callable \$body): string { return \$depth > 0 ? layout(\$depth - 1, \$body) : \$body(); }
\$pdo = new PDO('pgsql:host=$T/pgsock;port=$PGPORT;dbname=postgres', 'postgres', null, [PDO::ATTR_PERSISTENT => true, PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
\$one = \$pdo->prepare('SELECT id, name, price FROM items WHERE id = ?');
\$rows = [];
foreach ([random_int(1, 20000), random_int(1, 20000), random_int(1, 20000)] as \$id) { \$one->execute([\$id]); \$rows[] = \$one->fetch(PDO::FETCH_ASSOC); }
\$count = (int) \$pdo->query('SELECT count(*) FROM items WHERE price > 50')->fetchColumn();
echo layout(20, static function () use (\$rows, \$count): string {
    \$html = '';
    for (\$i = 0; \$i < ${WORK_ITERS:-24000}; \$i++) { \$html .= price(\$i) > 1e9 ? 'x' : ''; }
    foreach (\$rows as \$r) { \$html .= renderRow(\$r); }
    return '<table>' . \$html . '</table><p>' . \$count . '</p>';
});
PHP

cat > "$T/app/prepend.php" <<PHP
<?php
declare(strict_types=1);
spl_autoload_register(static function (string \$c): void {
    if (str_starts_with(\$c, 'Bitville\\\\Apm\\\\')) { require '$SRC/' . str_replace('\\\\', '/', substr(\$c, 13)) . '.php'; }
});
\$bvCallGraph = isset(\$_SERVER['BENCH_CALLGRAPH']);
\$bvProfiler = \\Bitville\\Apm\\Profiler\\ProfilerFactory::create(\$bvCallGraph ? 'tideways' : 'excimer', (float) (\$_SERVER['BENCH_PERIOD'] ?? 0.01), \$bvCallGraph);
\$bvProfiler?->start();
\$bvTimer = \\Bitville\\Apm\\Profiler\\ProgressTimer::start(5.0, 5.0, static function (array \$stack): void {});
register_shutdown_function(static function () use (\$bvProfiler, \$bvTimer): void {
    \$bvTimer?->stop();
    \$r = \$bvProfiler?->stop();
    \$GLOBALS['bv_json'] = json_encode(\$r);
});
PHP
echo '<?php' > "$T/app/empty.php"
chmod -R a+rX "$T/app"

# --- php-fpm -------------------------------------------------------------------
POOLS="base base2 empty"
for ms in $PERIODS_MS; do POOLS="$POOLS p$ms"; done
[ "${TIDEWAYS:-1}" = 1 ] && php -r 'exit(function_exists("tideways_xhprof_enable") ? 0 : 1);' && POOLS="$POOLS tw"
{
    echo "[global]"
    echo "pid = $T/fpm.pid"
    echo "error_log = $T/fpm.log"
    echo "daemonize = no"
    for pool in $POOLS; do
        echo "[$pool]"
        echo "user = nobody"
        echo "group = nogroup"
        echo "listen = $T/fpm-$pool.sock"
        echo "listen.mode = 0666"
        echo "pm = static"
        echo "pm.max_children = 4"
        echo "catch_workers_output = yes"
        case $pool in
            p*) ms=${pool#p}
                echo "php_admin_value[auto_prepend_file] = $T/app/prepend.php"
                echo "env[BENCH_PERIOD] = $(python3 -c "print($ms/1000)")" ;;
            empty) echo "php_admin_value[auto_prepend_file] = $T/app/empty.php" ;;
            tw) echo "php_admin_value[auto_prepend_file] = $T/app/prepend.php"
                echo "env[BENCH_PERIOD] = 0.01"
                echo "env[BENCH_CALLGRAPH] = 1" ;;
        esac
    done
} > "$T/fpm.conf"
/usr/sbin/php-fpm8.2 -R -y "$T/fpm.conf" -c /etc/php/8.2/fpm/php.ini &
PIDS+=($!)

# --- nginx -----------------------------------------------------------------------
NGPORT=$(free_port)
mkdir -p "$T/nginx"
{
    echo "user root; daemon off; worker_processes 1; pid $T/nginx.pid; error_log $T/nginx/error.log;"
    echo "events { worker_connections 1024; }"
    echo "http { access_log off; client_body_temp_path $T/nginx/body; fastcgi_temp_path $T/nginx/fcgi;"
    echo "  proxy_temp_path $T/nginx/proxy; uwsgi_temp_path $T/nginx/uwsgi; scgi_temp_path $T/nginx/scgi;"
    echo "  server { listen 127.0.0.1:$NGPORT;"
    for pool in $POOLS; do
        echo "    location = /$pool { include /etc/nginx/fastcgi_params; fastcgi_param SCRIPT_FILENAME $T/app/index.php; fastcgi_pass unix:$T/fpm-$pool.sock; }"
    done
    echo "  } }"
} > "$T/nginx.conf"
/usr/sbin/nginx -e "$T/nginx/error.log" -c "$T/nginx.conf" &
PIDS+=($!)

for i in $(seq 1 50); do
    ok=1
    for pool in $POOLS; do curl -sf "http://127.0.0.1:$NGPORT/$pool" -o /dev/null || ok=0; done
    [ $ok = 1 ] && break
    sleep 0.2
done
[ $ok = 1 ] || { echo "stack did not come up"; cat "$T/fpm.log" "$T/nginx/error.log"; exit 1; }
curl -s "http://127.0.0.1:$NGPORT/base" | head -c 120; echo
single=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$NGPORT/base")
echo "# one request on base: ${single}s; rounds=$ROUNDS x ${SECS}s, wrk -t2 -c$CONNS, pools: $POOLS, nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"

# warm up every pool (opcache, persistent connections)
for pool in $POOLS; do wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$NGPORT/$pool" >/dev/null; done

# CPU seconds (user+sys, all threads) used so far by a pool's workers
pool_cpu() {
    local total=0 pid t
    for pid in $(pgrep -f "php-fpm: pool $1\$" || true); do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)

declare -A RPS CPUMS
set -- $POOLS
N=$#
POOLARR=($POOLS)
for r in $(seq 0 $((ROUNDS - 1))); do
    line="round $((r + 1)):"
    for k in $(seq 0 $((N - 1))); do
        pool=${POOLARR[$(((k + r) % N))]}
        c0=$(pool_cpu "$pool")
        out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$NGPORT/$pool")
        c1=$(pool_cpu "$pool")
        rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
        reqs=$(echo "$out" | awk '/requests in/ {print $1}')
        cpums=$(python3 -c "print(round(($c1 - $c0) * 1000 / $HZ / max(1, $reqs), 4))")
        CPUMS[$pool]="${CPUMS[$pool]:-} $cpums"
        errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}')
        [ -n "$errs" ] && echo "  $pool: $errs"
        RPS[$pool]="${RPS[$pool]:-} $rps"
        line="$line $pool=$rps(${cpums}ms)"
    done
    echo "$line"
done

python3 - "$POOLS" <<PY
import statistics, sys
pools = sys.argv[1].split()
rps = {$(for p in $POOLS; do printf '"%s": [%s], ' "$p" "$(echo ${RPS[$p]} | tr ' ' ',')"; done)}
cpu = {$(for p in $POOLS; do printf '"%s": [%s], ' "$p" "$(echo ${CPUMS[$p]} | tr ' ' ',')"; done)}
def table(title, data, unit, sign):
    base = data["base"]
    print(f"{title}")
    print(f"  {'pool':8} {'median':>10} {unit:6} {'vs base':>9}   per-round % vs base")
    for p in pools:
        ratios = [(x / b - 1) * 100 * sign for x, b in zip(data[p], base)]
        print(f"  {p:8} {statistics.median(data[p]):10.3f} {unit:6} {statistics.median(ratios):+8.2f}%   " + " ".join(f"{x:+.1f}" for x in ratios))
table("throughput (cost = fewer req/s, shown as + %)", rps, "req/s", -1)
table("php-fpm worker CPU per request (+ % = more CPU)", cpu, "ms", 1)
PY
grep -v 'NOTICE' "$T/fpm.log" | grep -i 'warn\|error' | head -5 || true

#!/bin/bash
# Run once by the postgres image's entrypoint, on the first start with an
# empty data volume (as the postgres superuser, over the local socket):
#
#   - role shop (the application) and database shop owned by it, loaded with
#     the example shop's schema and seed (php/examples/sql, mounted read-only
#     at $SHOP_SQL_DIR), the tables owned by shop;
#   - pg_stat_statements in shop (the server preloads it: see the command in
#     docker-compose.yml);
#   - role bitville for the pg-exporter, with pg_monitor.
#
# Passwords come from the service's environment (SHOP_DB_PASSWORD,
# BITVILLE_PG_PASSWORD). Changing them later needs ALTER ROLE, or
# `docker compose down -v` to start from an empty volume.
set -euo pipefail

sql_dir=${SHOP_SQL_DIR:-/srv/shop-sql}
for f in schema.sql seed.sql; do
	if [ ! -r "$sql_dir/$f" ]; then
		echo "10-shop.sh: $sql_dir/$f is missing: mount the repository's php/examples/sql there" >&2
		exit 1
	fi
done
: "${SHOP_DB_PASSWORD:?SHOP_DB_PASSWORD must be set}"
: "${BITVILLE_PG_PASSWORD:?BITVILLE_PG_PASSWORD must be set}"

psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}")

# psql substitutes :'name' with the quoted value of a variable in what it
# reads from stdin, so the passwords need no escaping here.
"${psql[@]}" --dbname postgres \
	--set shop_password="$SHOP_DB_PASSWORD" \
	--set bitville_password="$BITVILLE_PG_PASSWORD" <<'SQL'
CREATE ROLE shop LOGIN PASSWORD :'shop_password';
CREATE DATABASE shop OWNER shop;
CREATE ROLE bitville LOGIN PASSWORD :'bitville_password';
GRANT pg_monitor TO bitville;
SQL

"${psql[@]}" --dbname shop --command 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'

# As role shop, so that the application owns its tables. seed.sql ends with
# a database-wide ANALYZE, which warns about every catalog a non-superuser
# may not analyze: only errors are shown (and stop the script).
"${psql[@]}" --dbname shop --command 'SET ROLE shop' --command 'SET client_min_messages = error' \
	--file "$sql_dir/schema.sql" --file "$sql_dir/seed.sql"

echo "10-shop.sh: database shop loaded; roles shop and bitville created"

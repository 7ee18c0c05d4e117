#!/usr/bin/env bash
# Runs one pgTAP file (called by prove -e): in a fresh database with pgtap
# and iterjob installed, after the shared helpers in pgtap-helpers.sql; the
# database is dropped afterwards.
set -euo pipefail
file=$1
db="tap_$(basename "$file" .sql)"
PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
psql -X -q -d postgres -c "CREATE DATABASE $db" >/dev/null
psql -X -q -d "$db" -c "SET client_min_messages = warning; CREATE EXTENSION pgtap; CREATE EXTENSION iterjob" >/dev/null
set +e
psql -X -q -A -t -v ON_ERROR_STOP=1 -v "dbname=$db" -d "$db" \
	-v "recipe=$(cd "$(dirname "$0")" && pwd)/readme-recipe.sh" \
	-f "$(dirname "$0")/pgtap-helpers.sql" -f "$file"
rc=$?
set -e
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
exit $rc

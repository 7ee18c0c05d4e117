#!/usr/bin/env bash
# Prints recipe N (1, 2, ...) of README.md's Recipes section: the Nth ```sql
# block between "## Recipes" and the next "## " heading; with "count",
# how many there are.  test/pgtap/recipes.sql runs them as written.
set -euo pipefail
readme="$(dirname "$0")/../README.md"
awk -v want="$1" '
	/^## / { in_recipes = ($0 == "## Recipes") }
	in_recipes && /^```sql$/ { n++; inside = 1; next }
	inside && /^```$/ { inside = 0; next }
	inside && n == want { print }
	END { if (want == "count") print n }
' "$readme"

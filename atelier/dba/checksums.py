"""Per-table row counts and checksums: what a backup's manifest keeps, what
a restore, a logical replica or an upgrade is compared with."""

from __future__ import annotations

import json

from atelier.dba.server import Server, psql_local

# The per-table facts a restore is compared with. The checksum is the sum of
# a 64-bit hash of every row: as good as a hash of the ordered contents for
# telling tables apart, and it needs no sort (a 1 GB table is one scan).
# Tables whose columns are all of the built-in types below hash each row by
# value (hash_record_extended: no text conversion, the cheapest); any other
# table hashes its rows' text (hashtextextended). Both are the hashes hash
# partitioning relies on, so they are the same on every major (14+), and the
# choice depends only on the column types, so both sides of a restore (or of
# logical replication) make the same one. md5 of the text cost 4.5x as much.
HASHED_BY_VALUE = ("bool", "int2", "int4", "int8", "oid", "float4", "float8", "numeric", "text", "varchar",
                   "bpchar", "name", "bytea", "uuid", "date", "time", "timestamp", "timestamptz",
                   "interval", "jsonb")
ROW_ALIAS = "atelier_row"
CHECKSUMS_GEXEC = f"""SELECT format('SELECT coalesce(json_agg(q ORDER BY q."table"), ''[]'') FROM (%s) q',
       coalesce(string_agg(format(
           'SELECT %L AS "table", count(*) AS rows, coalesce(sum(%s::numeric), 0)::text '
           'AS checksum FROM %I.%I {ROW_ALIAS}',
           n.nspname || '.' || c.relname,
           CASE WHEN by_value THEN 'hash_record_extended({ROW_ALIAS}, 0)'
                ELSE 'hashtextextended({ROW_ALIAS}::text, 0)' END,
           n.nspname, c.relname), ' UNION ALL '),
           'SELECT NULL::text AS "table", 0 AS rows, NULL::text AS checksum WHERE false'))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL (
      SELECT coalesce(bool_and(t.typnamespace = 'pg_catalog'::regnamespace
                               AND t.typname IN ({", ".join(f"'{t}'" for t in HASHED_BY_VALUE)})), false)
             AS by_value
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) columns
 WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
\\gexec
"""

# The user's relations: an extension's own (atelier creates the preloaded
# ones in experdb) do not make a database "not empty". An extension owns its
# tables and views directly, their indexes through the table, and its
# composite types (pldbgapi has several) through the type, not the relation.
USER_OBJECTS_SQL = """SELECT count(*) AS objects FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 LEFT JOIN pg_index i ON i.indexrelid = c.oid
 WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.deptype = 'e'
                   AND ((d.classid = 'pg_class'::regclass AND d.objid = coalesce(i.indrelid, c.oid))
                        OR (d.classid = 'pg_type'::regclass AND d.objid = c.reltype)))"""


def parse_checksums(raw: str) -> dict[str, dict]:
    return {row["table"]: {"rows": row["rows"], "checksum": row["checksum"]} for row in json.loads(raw or "[]")}


def table_checksums(server: Server, db: str, **kw) -> dict[str, dict]:
    """table -> {rows, checksum} of `db` as it is now."""
    result = server.step(f"checksumming {db}", psql_local(db), stdin=CHECKSUMS_GEXEC, hide="out", **kw)
    return parse_checksums(result.stdout.strip())


def compare_tables(expected: dict[str, dict], found: dict[str, dict]) -> list[str]:
    """What differs between two {table: {rows, checksum}}; [] when equal."""
    problems = []
    for table in sorted(set(expected) | set(found)):
        want, got = expected.get(table), found.get(table)
        if want is None:
            problems.append(f"{table}: not in the backup")
        elif got is None:
            problems.append(f"{table}: missing")
        elif want["rows"] != got["rows"]:
            problems.append(f"{table}: {got['rows']} rows, {want['rows']} expected")
        elif want["checksum"] != got["checksum"]:
            problems.append(f"{table}: same {got['rows']} rows, different contents")
    return problems

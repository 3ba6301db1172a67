"""What DBAs do to clusters, seen from the host: one Server object per
PostgreSQL server (its SQL, service, data directory and temp folders), and
on it replication and role changes, drills that count lost rows, backups,
PITR, logical replication, tuning, health, pgbench and PgBouncer."""

"""A PostgreSQL developer's helpers in a server container (the original's
pg-* functions): source trees, configure/make/install, the service,
valgrind, coverage, cores, the psql identity, git and the workspace.
Plain functions over a context (anything with run/sudo/put/get)."""

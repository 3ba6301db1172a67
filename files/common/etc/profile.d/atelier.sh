# shellcheck shell=bash
# atelier login shell: the original's prompt (p@d12-p15-a) and PostgreSQL paths.
[ -r /etc/atelier/atelier.env ] && . /etc/atelier/atelier.env
if [ -r /etc/atelier/pg.env ]; then
    set -a; . /etc/atelier/pg.env; set +a
    . /etc/atelier/build.sh  # the helpers' locale and ccache: one cache for both
    case ":$PATH:" in *":$PG_BINDIR:"*) ;; *) PATH="$PG_BINDIR:$PATH" ;; esac
fi
if [ -n "${BASH_VERSION:-}" ] && [ -n "${ATELIER_PROMPT:-}" ]; then
    PS1="\[\e[1;32m\]${USER:0:1}@${ATELIER_PROMPT}\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]\$ "
fi
export PATH
# pg.user: which identity psql uses (PGHOST, PGUSER, PGDATABASE; passwords in ~/.pgpass).
# experdba on experdb by default, as in the original (atelier-pg-setup writes it once).
if [ -r "$HOME/.pg_user" ]; then set -a; . "$HOME/.pg_user"; set +a; fi
if [ -n "${BASH_VERSION:-}" ] && [ -n "${PG_SOCKET_DIR:-}" ]; then
    # pg-user experdba|postgres|show, typed here: this shell and the next logins.
    pg-user() {
        case "${1:-show}" in
            experdba) printf 'PGHOST=127.0.0.1\nPGUSER=experdba\nPGDATABASE=experdb\n' > "$HOME/.pg_user" ;;
            postgres) printf 'PGHOST=%s\nPGUSER=postgres\nPGDATABASE=postgres\n' "$PG_SOCKET_DIR" > "$HOME/.pg_user" ;;
            show) cat "$HOME/.pg_user" 2>/dev/null || echo "PGUSER=postgres (peer)"; return 0 ;;
            *) echo "pg-user: unknown user '$1'; valid: experdba, postgres, show" >&2; return 2 ;;
        esac
        set -a; . "$HOME/.pg_user"; set +a
    }
fi

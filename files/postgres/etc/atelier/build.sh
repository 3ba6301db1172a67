# shellcheck shell=bash
# How PostgreSQL builds run in this container, for atelier's helpers
# (inv pg.make), login shells (inv shell) and `docker exec` alike. Sourced
# after pg.env.
#
# ccache hashes the locale variables, so they are pinned here: a make typed
# in a shell then hits the cache that inv pg.make filled, and the reverse.
export LANG=C.UTF-8 LC_ALL=C.UTF-8
case ":$PATH:" in
    *":/usr/lib/ccache:"*) ;;
    *) PATH="/usr/lib/ccache:/usr/lib64/ccache:$PATH" ;;
esac
export PATH
# git's global configuration lives in the workspace: the user may edit it, and
# it survives recreated containers (atelier-pg-setup makes it the first time).
export GIT_CONFIG_GLOBAL="$PG_HOME/workspace/.gitconfig"
# One cache per OS, in a volume every project on the engine shares (atelier
# mounts it here), so it outlives workspaces: a new project builds warm.
# Root (sudo make install) keeps its own rather than leave root-owned entries there.
if [ "$(id -un)" = postgres ]; then
    export CCACHE_DIR=/var/cache/atelier/ccache
fi

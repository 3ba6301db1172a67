# shellcheck shell=bash
# atelier: login shells read /etc/profile (prompt, PostgreSQL paths) then this.
[ -f ~/.bashrc ] && . ~/.bashrc
cd ~/workspace 2>/dev/null || true

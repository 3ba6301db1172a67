"""A command that ends with the client: what every command atelier runs in
a container is wrapped in."""

from __future__ import annotations

import shlex


def guarded(line: str) -> str:
    """`line` run by bash in a process group of its own, which is killed when
    the client goes away: a watcher reads the command's stdin (the SSH
    channel, or the pipe from a local atelier) and on its end, which comes
    when atelier exits or is interrupted, signals the whole group. Without
    it, `make` or `sleep` went on in the container after Ctrl-C."""
    return ("exec 3<&0; setsid bash -c " + shlex.quote(line) + " </dev/null 3<&- & child=$!; "
            "{ cat <&3 >/dev/null 2>&1; kill -TERM -- -$child 2>/dev/null; } </dev/null >/dev/null 2>&1 & "
            "watcher=$!; exec 3<&-; wait $child; code=$?; kill $watcher 2>/dev/null; exit $code")

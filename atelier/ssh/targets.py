"""Which containers a command goes to: names, globs (`debian12-pg15-*`,
`*-standby`) and comma lists over the containers atelier recorded, and the
command words after `--`. Pure but for reading the recorded host keys."""

from __future__ import annotations

import fnmatch
import shlex

from atelier.core.errors import AtelierError, choice_error
from atelier.core.settings import Settings
from atelier.core.state import recorded_keys

LOCAL = "local"


def recorded_names(settings: Settings) -> list[str]:
    """Containers whose keys atelier recorded: the ones there are to reach."""
    return list(recorded_keys(settings))


def resolve_targets(pattern: str, names: list[str]) -> list[str]:
    """One name, a glob (`debian12-pg15-*`, `*-standby`) or a comma list of
    them, over `names`; each part must match something."""
    chosen: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        if part == LOCAL:
            matches = [LOCAL]
        else:
            matches = [n for n in names if fnmatch.fnmatchcase(n, part)]
        if not matches:
            if not names:
                raise AtelierError(f"no container of this project is up to match {part!r}; run `inv up` first")
            raise choice_error("target", part, names)
        chosen += [m for m in matches if m not in chosen]
    return chosen


def command_after_dashes(argv: list[str]) -> list[str]:
    """The words after the first `--`, as given (Invoke keeps only a joined string)."""
    return argv[argv.index("--") + 1:] if "--" in argv else []


def remote_command(words: list[str]) -> str:
    """One word is a shell line (`-- 'make && make check'`, as with ssh);
    several keep their exact argv (`-- psql -c 'select 1'`)."""
    return words[0] if len(words) == 1 else shlex.join(words)

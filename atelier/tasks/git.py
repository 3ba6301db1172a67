"""git.*: every git repository in ~/workspace of the container(s)."""

from atelier.core.errors import AtelierError
from atelier.pg import git

from .common import TARGET_HELP, USER_HELP, atelier_task, confirm, on_targets

TARGET_AND_USER = {"target": TARGET_HELP, "user": USER_HELP}


@atelier_task(help=TARGET_AND_USER)
def pull(c, target=None, user=None):
    """Fetch every remote and pull, in every workspace repository."""
    on_targets(c, target, user, git.pull)


@atelier_task(help={**TARGET_AND_USER, "lines": "commits per repository (default: the screen's height)"})
def log(c, target=None, user=None, lines=0):
    """One line per commit, cut to the screen's height, in every workspace repository."""
    if int(lines) < 0:
        raise AtelierError(f"--lines {lines} must be 0 (the screen's height) or more")
    on_targets(c, target, user, lambda ctx, **kw: git.log(ctx, int(lines), **kw))


@atelier_task(help=TARGET_AND_USER)
def update(c, target=None, user=None):
    """Fetch all, make main/master from origin when missing, update submodules, pull."""
    on_targets(c, target, user, git.update)


@atelier_task(help={**TARGET_AND_USER, "yes": "remove without asking (scripts)"})
def clean(c, target=None, user=None, yes=False):
    """Show what git clean -xdf would remove in every workspace repository; remove it after a yes."""
    on_targets(c, target, user, lambda ctx, **streams: git.clean(ctx, dry_run=True, **streams))
    confirm("remove every file listed above (untracked and ignored alike)?", yes,
            "nothing removed; git.clean removes every file listed above, untracked ones included: "
            "add --yes to remove them")
    on_targets(c, target, user, lambda ctx, **streams: git.clean(ctx, dry_run=False, **streams))

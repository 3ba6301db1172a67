"""git.*: every git repository in ~/workspace of the container(s)."""

from .common import TARGET_HELP, USER_HELP, atelier_task, on_targets

H = {"target": TARGET_HELP, "user": USER_HELP}


@atelier_task(help=H)
def pull(c, target=None, user=None):
    """Fetch every remote and pull, in every workspace repository."""
    from ..helpers import git_pull

    on_targets(target, user, git_pull)


@atelier_task(help=H)
def update(c, target=None, user=None):
    """Fetch all, make main/master from origin when missing, update submodules, pull."""
    from ..helpers import git_update

    on_targets(target, user, git_update)


@atelier_task(help=H)
def clean(c, target=None, user=None):
    """git clean -xdf in every workspace repository."""
    from ..helpers import git_clean

    on_targets(target, user, git_clean)

"""db.*: the clusters themselves (replication, backups, tuning, monitoring)."""

from __future__ import annotations

from .common import USER_HELP, atelier_task, confirm, finish, locked, session, targets


@atelier_task(help={"target": "standby container(s): name, glob or comma list", "user": USER_HELP,
                    "yes": "do not ask before throwing the data away (scripts)"})
def reseed(c, target=None, user=None, yes=False):
    """Throw away a standby's data and copy it again from its active (asks first)."""
    from ..in_container import reseed as reseed_standby
    from ..remote import fan_out

    with session(c) as current:
        names = targets(current, target)
        shown = ", ".join(names)
        confirm(f"delete the data of {shown} and copy it again from its active?", yes,
                f"db.reseed deletes the data of {shown} and copies it again from its active; "
                "add --yes to confirm")
        with locked(current.settings, "db.reseed"):
            finish(fan_out(current, names, reseed_standby, user))

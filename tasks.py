"""atelier: a PostgreSQL development environment of many containers.

`inv --list` shows the tasks; each module of atelier/tasks is one topic:
images and containers and SSH at the top level, then pg.*, git.*, workspace.*.
"""

from invoke import Collection

from atelier.tasks import db, environment, git, pg, remote, workspace

ns = Collection.from_module(environment)
for name, task in Collection.from_module(remote).tasks.items():
    ns.add_task(task, name)
for module, name in ((pg, "pg"), (db, "db"), (git, "git"), (workspace, "workspace")):
    ns.add_collection(Collection.from_module(module), name)

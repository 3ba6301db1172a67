"""atelier: a PostgreSQL development environment of many containers.

`inv --list` shows the tasks; each module of atelier/tasks is one topic.
"""

from invoke import Collection

from atelier.tasks import environment, remote

ns = Collection.from_module(environment)
for module in (remote,):
    for name, task in Collection.from_module(module).tasks.items():
        ns.add_task(task, name)

"""atelier: a PostgreSQL development environment of many containers.

`inv --list` shows the tasks; each module of atelier/tasks is one topic.
"""

from invoke import Collection

from atelier.tasks import environment

ns = Collection.from_module(environment)

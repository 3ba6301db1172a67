"""The `atelier` command: the same tasks as `inv` in a checkout, for an
installed package (`pipx install .`, then `atelier up --pg 15` anywhere).
.env and .state/ are those of the folder it is run from."""

from invoke import Program

from .tasks import namespace

program = Program(namespace=namespace(), name="atelier", binary="atelier")

"""atelier: a PostgreSQL development environment of many containers.

`inv --list` shows the tasks; atelier/tasks/ holds one module per topic.
Run from a checkout, .env and .state/ are this folder's.
"""

from pathlib import Path

from atelier.tasks import namespace

ns = namespace(root=str(Path(__file__).resolve().parent))

"""The one model of the environment, and what it stands on: the matrix of
OSes, majors, roles and services; settings from `.env`; the state folder;
errors the user can act on; small utilities every layer shares.

The lowest layer: it imports nothing else of atelier's, and no module here
talks to an engine, a container or SSH (state.py writes only `.state/`)."""

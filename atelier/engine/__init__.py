"""The Docker engine, through the Docker SDK: which engine (local or over
SSH), one client per run, images, bringing containers up and down,
readiness, status, and acting on one container (start, kill, copy in)."""

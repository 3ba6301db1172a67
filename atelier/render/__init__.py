"""Pure rendering: the model and the jinja2 templates turned into files and
texts (Dockerfiles and build contexts, the files put into containers, the
container specs and their config hash, the compose file, the ssh_config).
No side effect but writing a rendered file where a caller asks."""

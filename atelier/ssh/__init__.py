"""The SSH path into containers, the way users go by hand: HAProxy, an init
container as jump host, the target. One Session per run (Fabric), target
names, guarded commands, and the fan-out that runs work on many at once."""

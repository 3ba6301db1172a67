"""A rebuild with nothing changed: `inv build` against plain `docker build`
of the same rendered Dockerfiles (aim: ratio under 1.2). Both use one layer
cache, so neither rebuilds anything; the images must have been built once.
Plain builds are tagged bench-*, so they never retag atelier's own images."""

import shutil
import tempfile
from pathlib import Path

from common import BENCH_ENV, alternate, compare, timed

from atelier.core.model import Environment, select
from atelier.core.settings import load_settings

env = Environment(load_settings(environ=BENCH_ENV), select())
out = Path(tempfile.mkdtemp(prefix="atelier-render-"))
timed(["inv", "render", "--out", str(out)])


def plain():
    total = 0.0
    for image in env.images:
        total += timed(["docker", "build", "-q", "-t", f"bench-{image.name}", str(out / "images" / image.name)])
    return total


timed(["inv", "build"])
plain()
atelier, docker = alternate(lambda: timed(["inv", "build"]), plain, runs=9)
compare("inv build (nothing changed)", atelier, "docker build -q x%d (nothing changed)" % len(env.images), docker,
        "< 1.2")
for image in env.images:
    timed(["docker", "rmi", f"bench-{image.name}"])
shutil.rmtree(out)

"""A rebuild with nothing changed: `inv build` against plain `docker build`
of the same rendered Dockerfiles (aim: ratio under 1.2). Both use one layer
cache, so neither rebuilds anything; the images must have been built once.
Plain builds are tagged bench-*, so they never retag atelier's own images."""

import shutil
import tempfile
from pathlib import Path

from common import report, timed

from atelier.model import Environment, select
from atelier.settings import load_settings
from common import BENCH_ENV

env = Environment(load_settings(environ=BENCH_ENV), select())
out = Path(tempfile.mkdtemp(prefix="atelier-render-"))
timed(["inv", "render", "--out", str(out)])


def plain():
    total = 0.0
    for image in env.images:
        total += timed(["docker", "build", "-q", "-t", f"bench-{image.name}", str(out / "images" / image.name)])
    return total


timed(["inv", "build"])
runs = 5
atelier = [timed(["inv", "build"]) for _ in range(runs)]
docker = [plain() for _ in range(runs)]
report("inv build (nothing changed)", atelier)
report("docker build x%d (nothing changed)" % len(env.images), docker)
for image in env.images:
    timed(["docker", "rmi", f"bench-{image.name}"])
print(f"ratio inv/docker (medians): {sorted(atelier)[runs // 2] / sorted(docker)[runs // 2]:.2f} (aim: < 1.2)")
shutil.rmtree(out)

"""PostgreSQL builds through atelier (debian12/PG15 by default, or any OS and
major Debian's archive builds: --os debian14 --pg 18; the distribution's
source, debug mode), on the bench project:
- a full `inv pg.make` (make world, the default) with ccache cold, then
  `pg.clean` and `pg.make` again with ccache warm (aim: the second at least
  3x faster), and once more after `inv down --volumes` and `up`: a new
  workspace, the ccache volume kept;
- atelier's overhead: `inv pg.make` against the same make run with
  `docker exec` (both after pg.clean, ccache warm, taken in turns)
  (aim: ratio under 1.05; --runs 0 leaves it out).
Also the image build of that OS and major, from its base (--image)."""

import argparse
import statistics
import subprocess

from common import BENCH_ENV, env, report, timed

from atelier.pg.step import PRELUDE, SOURCE

parser = argparse.ArgumentParser()
parser.add_argument("--os", default="debian12")
parser.add_argument("--pg", default="15")
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--image", action="store_true", help="time the init and pg image builds first (removes them)")
args = parser.parse_args()
TARGET = f"{args.os}-pg{args.pg}-standalone"
CONTAINER = f"{BENCH_ENV['ATELIER_PROJECT']}-{TARGET}"
WHAT = "world"  # pg.make's default
RUNS = args.runs


def inv(*args):
    return timed(["inv", *args])


def docker_make() -> float:
    return timed(["docker", "exec", "-u", "postgres", CONTAINER, "bash", "-c",
                  PRELUDE + f'cd "{SOURCE}" && make -s -j"$(nproc)" {WHAT}'])


inv("down", "--volumes", "--yes")
if args.image:
    subprocess.run(["docker", "image", "rm", f"atelier-{args.os}-pg{args.pg}", f"atelier-{args.os}-init"],
                   env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["docker", "builder", "prune", "-af"], env=env(), stdout=subprocess.DEVNULL)
image = inv("build", "--os", args.os, "--pg", args.pg)
inv("up", "--os", args.os, "--pg", args.pg)
inv("workspace.get", "distro", "-t", TARGET)
inv("pg.configure", "-t", TARGET, "--mode", "debug")
subprocess.run(["docker", "exec", "-u", "postgres", CONTAINER, "bash", "-c", PRELUDE + 'ccache -C -z'],
               check=True, env=env(), stdout=subprocess.DEVNULL)

cold = inv("pg.make", "-t", TARGET)
inv("pg.clean", "-t", TARGET)
warm = inv("pg.make", "-t", TARGET)
atelier_runs, docker_runs = [], []
for _ in range(RUNS):
    inv("pg.clean", "-t", TARGET)
    docker_runs.append(docker_make())
    inv("pg.clean", "-t", TARGET)
    atelier_runs.append(inv("pg.make", "-t", TARGET))
# The workspace and data volumes deleted, the ccache volume kept: a new
# source tree, configured again, builds from the shared cache.
inv("down", "--volumes", "--yes")
inv("up", "--os", args.os, "--pg", args.pg)
inv("workspace.get", "distro", "-t", TARGET)
inv("pg.configure", "-t", TARGET, "--mode", "debug")
recreated = inv("pg.make", "-t", TARGET)
inv("down", "--volumes", "--yes")

print(f"{args.os}/PG {args.pg}")
if args.image:
    print(f"inv build of the init and pg images from the base: {image:.1f}s")
print(f"pg.make {WHAT}, ccache cold: {cold:.1f}s")
print(f"pg.make {WHAT} after pg.clean, ccache warm: {warm:.1f}s")
print(f"pg.make {WHAT} after `down --volumes` and `up` (a new workspace, ccache kept): {recreated:.1f}s")
print(f"speed-up: {cold / warm:.1f}x; against the median of every warm inv pg.make: "
      f"{cold / statistics.median([warm, *atelier_runs]):.1f}x (aim: >= 3x)")
if RUNS:
    report("inv pg.make (warm)", atelier_runs)
    report("docker exec make (warm)", docker_runs)
    print(f"ratio inv/docker exec (medians): {statistics.median(atelier_runs) / statistics.median(docker_runs):.3f} "
          "(aim: < 1.05)")

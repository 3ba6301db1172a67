"""The no-op paths, measured as the layout issue asks (default profile,
built images, the interpreter's own `inv`, medians of runs taken in turns):

- `inv run -t X -- hostname` against OpenSSH with the ssh_config atelier
  generates, its Control* lines removed (both open two SSH connections:
  the jump host, then the target) (aim: < 1.3x);
- a no-op `inv build` against a shell loop of `docker build -q` over the
  images `inv render` writes (aim: < 1.2x);
- a second, no-op `inv up` (aim: < 0.7 s).

Run: python3 bench/noop.py [--runs N]"""

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import BENCH_ENV, alternate, compare, env, report, timed

from atelier.core.model import Environment, select
from atelier.core.settings import load_settings

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=11)
args = parser.parse_args()
TARGET = "debian12-pg15-active"

settings = load_settings(environ=BENCH_ENV)
model = Environment(settings, select())
timed(["inv", "build"])
timed(["inv", "up"])

# OpenSSH over the same path, from atelier's own ssh_config without its
# connection sharing, so that both sides pay for both handshakes.
generated = (settings.state_dir / "ssh_config").read_text()
plain = Path(tempfile.mkdtemp(prefix="atelier-noop-")) / "ssh_config"
plain.write_text("".join(line + "\n" for line in generated.splitlines()
                         if not line.strip().lower().startswith("control")))
ssh = ["ssh", "-F", str(plain), TARGET, "hostname"]
out = subprocess.run(ssh, capture_output=True, text=True, env=env())
assert out.stdout.strip() == TARGET, (out.stdout, out.stderr)
inv_run, openssh = alternate(lambda: timed(["inv", "run", "-t", TARGET, "--", "hostname"]),
                             lambda: timed(ssh), args.runs)
compare("inv run -t X -- hostname", inv_run, "ssh -F ssh_config (no Control*) X hostname", openssh, "< 1.3")

rendered = plain.parent / "rendered"
timed(["inv", "render", "--out", str(rendered)])


def docker_build_loop() -> float:
    images = " ".join(str(rendered / "images" / i.name) for i in model.images)
    return timed(["sh", "-c", f"for d in {images}; do docker build -q -t bench-noop-$(basename $d) $d; done"])


docker_build_loop()
inv_build, docker_build = alternate(lambda: timed(["inv", "build"]), docker_build_loop, args.runs)
compare("inv build (nothing changed)", inv_build, f"docker build -q x{len(model.images)} (nothing changed)",
        docker_build, "< 1.2")
for image in model.images:
    subprocess.run(["docker", "rmi", "-f", f"bench-noop-{image.name}"], capture_output=True)

report("second, no-op inv up", [timed(["inv", "up"]) for _ in range(args.runs)], "< 0.7 s")
shutil.rmtree(plain.parent)
timed(["inv", "down"])

"""Wall time of `inv --list` in a fresh process (aim: under 0.25 s)."""

from common import report, timed

timed(["inv", "--list"])  # warm the file cache
report("inv --list", [timed(["inv", "--list"]) for _ in range(15)], "< 0.25 s")

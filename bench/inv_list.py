"""Wall time of `inv --list` in a fresh process (aim: under 0.5 s)."""

from common import report, timed

timed(["inv", "--list"])  # warm the file cache
report("inv --list", [timed(["inv", "--list"]) for _ in range(10)], "< 0.5 s")

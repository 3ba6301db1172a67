"""`inv up` of the default profile from built images until every server
answers and the standby streams (aim: under 30 s), then a second `inv up`
(aim: under 2 s). Cold = no containers and no volumes: clusters are made
and the standby is seeded with pg_basebackup inside the measured time."""

from common import report, timed

cold, warm = [], []
for _ in range(3):
    timed(["inv", "down", "--volumes", "--yes"])
    cold.append(timed(["inv", "up"]))
    warm.append(timed(["inv", "up"]))
timed(["inv", "down", "--volumes", "--yes"])
report("inv up, default profile, from built images (cold)", cold, "< 30 s")
report("second inv up", warm, "< 2 s")

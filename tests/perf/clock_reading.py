"""What a wall-clock reading costs inside a run (the virtual clock) against the real function.

python -m tests.perf.clock_reading
"""

import datetime
import time
import timeit

import agenttrace

agenttrace.init(quiet=True, local_files=False)
n = 200_000
real_time = time.time
base_t = min(timeit.repeat(real_time, number=n, repeat=5)) / n
base_dt = min(timeit.repeat(datetime.datetime.now, number=n, repeat=5)) / n


@agenttrace.run("bench")
def inside() -> tuple[float, float]:
    t = min(timeit.repeat(time.time, number=n, repeat=5)) / n
    d = min(timeit.repeat(datetime.datetime.now, number=n, repeat=5)) / n
    return t, d


t, d = inside()
print(f"time.time: {base_t * 1e9:.0f} ns real, {t * 1e9:.0f} ns in a run (+{(t - base_t) * 1e9:.0f} ns)")
print(f"datetime.now: {base_dt * 1e9:.0f} ns real, {d * 1e9:.0f} ns in a run (+{(d - base_dt) * 1e9:.0f} ns)")

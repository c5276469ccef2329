"""A protocol profile for tests that run the harness on tiny models: well under a second per phase when the
machine is quiet, at most about one when it is not."""

from bench.config import ProfileConfig

# Named "quick" (the name is part of the configuration key): the whole protocol (rest, idle segments, warm-up,
# windows until +-5% or the cap) at the smallest durations whose intervals still exclude zero on a tiny model.
TINY = ProfileConfig(name="quick", settle_s=0.02, idle_s=0.1, idle_segments=4, warmup_calls=1, warmup_s=0.05,
                     warmup_max_s=0.2, min_window_s=0.05, min_windows=4, target_ci=0.05, max_seconds=1.0)

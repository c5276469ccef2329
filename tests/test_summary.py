import pandas as pd

from bench.summary import short_of_target
from tests.rows import SERVE, make_row


def test_a_row_short_of_its_target_names_the_setting_that_would_give_more_windows():
    capped = make_row(ci_target=0.02, ci_target_met=False, ci_stop="time cap")
    idle = make_row(quant="int8", ci_target=0.02, ci_target_met=False, ci_stop="idle baseline")
    served = make_row(**SERVE, ci_target=0.05, ci_target_met=False, ci_stop="serve.duration_s ended the load")
    met = make_row(quant="bf16", ci_target=0.02, ci_target_met=True, ci_stop="target")
    lines = short_of_target(pd.DataFrame([capped, idle, served, met]))
    assert len(lines) == 3 and all(line.startswith("NEEDS A LONGER RUN") for line in lines)
    assert lines[0].endswith("raise profile.max_seconds")
    assert lines[1].endswith("raise profile.idle_s or profile.idle_segments")
    assert lines[2].endswith("raise serve.duration_s") and "output token figure" in lines[2]

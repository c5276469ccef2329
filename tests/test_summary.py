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


def test_ratios_in_the_summary_are_to_each_backends_reference_and_the_table_says_which():
    from bench.summary import table

    def decoder(quant, backend, ttft):
        return make_row(scenario="generate", model="smollm2", quant=quant, backend=backend, prompt_len=128,
                        new_tokens=32, ttft_ms_p50=ttft, itl_ms_p50=10.0)

    rows = pd.DataFrame([decoder("fp32", "pytorch", 100.0), decoder("int8", "pytorch", 50.0),
                         decoder("f16", "llamacpp", 200.0), decoder("q8_0", "llamacpp", 150.0)])
    lines = table(rows).splitlines()
    ratio = {line.split()[1]: line.split()[7] for line in lines[1:5]}  # quant -> TTFT/fp32
    assert ratio == {"fp32": "1", "int8": "0.5", "f16": "1", "q8_0": "0.75"}
    assert "against each backend's reference: f16 on llamacpp, fp32 on pytorch." in lines[-1]
    assert "each backend's reference" not in table(rows[rows["backend"] == "pytorch"])

"""Properties of the front (hypothesis) and the analysis outputs on synthetic rows."""

import math

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from analysis.__main__ import main
from analysis.pareto import pareto_front, with_fronts
from bench.results import load, write_row
from tests.rows import frame_of, make_row

values = st.one_of(st.floats(0, 10, allow_nan=False), st.just(math.nan), st.sampled_from([1.0, 2.0]))
points = st.lists(st.tuples(values, st.floats(0.01, 10, allow_nan=False) | st.sampled_from([1.0, 2.0])),
                  min_size=0, max_size=25)


def dominates(a, b):
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


@given(points)
def test_front_points_are_never_dominated_and_every_other_point_is(pts):
    quality = np.array([p[0] for p in pts], dtype=float)
    energy = np.array([p[1] for p in pts], dtype=float)
    front = pareto_front(quality, energy)
    valid = [i for i in range(len(pts)) if not math.isnan(quality[i])]
    for i in valid:
        dominated = any(dominates(pts[j], pts[i]) for j in valid if j != i)
        assert front[i] == (not dominated)
        if not front[i]:
            assert any(front[j] and dominates(pts[j], pts[i]) for j in valid)
    assert not any(front[i] for i in range(len(pts)) if math.isnan(quality[i]))


def test_ties_stay_on_the_front_together():
    assert pareto_front(np.array([0.9, 0.9, 0.8]), np.array([1.0, 1.0, 1.0])).tolist() == [True, True, False]


def test_lower_is_better_metrics_are_flipped_and_unusable_rows_counted():
    rows = frame_of(status=["ok", "ok", "ok", "failed"], model="m", eval="wiki", device="cpu",
                    quality_metric="perplexity", quality=[10.0, 12.0, np.nan, np.nan],
                    energy_j_per_inference=[1.0, 0.5, 0.1, np.nan])
    out, excluded = with_fronts(rows)
    assert out["on_pareto_front"].tolist() == [True, True, False, False] and excluded == 2


def _row(i, quant, batch, quality, energy, measured=True):
    return make_row(run_id=str(i), model="minilm", eval="bbc-topics", device="cpu", device_name="AMD EPYC",
                    quant=quant, batch_size=batch, backend="pytorch", quality_metric="accuracy", quality=quality,
                    quality_ref=0.97, quality_gate=0.99, quality_ratio=quality / 0.97,
                    passes_quality_gate=quality / 0.97 >= 0.99, energy_j_per_inference=energy,
                    energy_j_per_inference_ci_low=energy * 0.9, energy_j_per_inference_ci_high=energy * 1.1,
                    energy_j_per_token=energy / 128, latency_ms_p50=energy * 100,
                    energy_source="rapl" if measured else "estimate", energy_measured=measured,
                    latency_ms_samples=[1.0, 2.0])


def test_analysis_writes_fronts_plots_and_reports(tmp_path):
    rows = [_row(0, "fp32", 1, 0.97, 0.37), _row(1, "int8", 1, 0.972, 0.24), _row(2, "bf16", 1, 0.97, 1.7),
            _row(3, "int8", 8, 0.95, 0.14, measured=False)]
    for r in rows:
        write_row(r, tmp_path / "tree" / r["run_id"])
    assert main([str(tmp_path / "tree"), "--out", str(tmp_path / "out")]) == 0
    fronts = pd.read_parquet(tmp_path / "out" / "pareto.parquet").set_index("run_id")
    assert fronts["on_pareto_front"].to_dict() == {"0": False, "1": True, "2": False, "3": True}
    assert (tmp_path / "out" / "pareto.csv").is_file()
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    # The estimated row has plots and a front of its own: never drawn or ranked with the measured ones.
    assert pngs == [f"{kind}_energy_bbc-topics_AMD-EPYC_{source}.png"
                    for kind in ("latency", "quality") for source in ("estimate", "rapl")]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## bbc-topics on AMD EPYC (energy measured by rapl)" in summary and "★" in summary
    assert "## bbc-topics on AMD EPYC (ESTIMATED energy, a model)" in summary and "estimate (ESTIMATE)" in summary
    lines = [line for line in summary.splitlines() if line.startswith("| ★") or line.startswith("|  |")]
    header = next(line for line in summary.splitlines() if line.startswith("| front")).split("|")
    energy = [h.strip() for h in header].index("J/inference")
    # By energy within each group, to the digits the ±10% intervals support; the estimated group comes first.
    assert [line.split("|")[energy].strip() for line in lines] == ["0.14", "0.24", "0.37", "1.7"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count('class="plotly-graph-div"') == 4 and "<table" in page
    assert len(load(tmp_path / "tree")) == 4  # the analysis output is not read back as rows

"""report.html's interactive plots: what hovering and the legend show, plotly.js inlined once with nothing fetched,
and the plots really drawn by headless Chromium from a file URL with the network cut off."""

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from plotly.offline import get_plotlyjs

from analysis import interactive
from analysis.__main__ import main
from analysis.pareto import with_fronts
from analysis.report import cost_note
from analysis.screenshot import BROWSERS, screenshot
from bench.results import write_row
from tests.rows import SERVE, make_row


def _row(i, quant, batch, quality, energy, backend="pytorch", measured=True, **extra):
    return make_row(run_id=str(i), quant=quant, batch_size=batch, backend=backend, quality=quality,
                    energy_j_per_inference=energy, energy_j_per_inference_ci_low=energy * 0.9,
                    energy_j_per_inference_ci_high=energy * 1.1, latency_ms_p50=energy * 100,
                    energy_source="rapl" if measured else "estimate", energy_measured=measured, **extra)


# Two backends, a pruned variant, two batch sizes of one variant; the estimate is a group of its own.
MEASURED = [_row(0, "fp32", 1, 0.97, 0.37), _row(1, "int8", 1, 0.972, 0.24), _row(2, "int8", 8, 0.95, 0.14),
            _row(3, "int8", 1, 0.96, 0.2, backend="onnxruntime"),
            _row(4, "fp32", 1, 0.9, 0.3, prune="heads", prune_amount=0.5)]
ESTIMATED = [_row(5, "bf16", 1, 0.97, 0.086, measured=False), _row(6, "fp32", 1, 0.97, 0.16, measured=False)]
SERVING = [make_row(**{**SERVE, "quant": quant, "serve_rate": rate, "achieved_rps": rate,
                       "energy_j_per_output_token": j / rate, "ttft_ms_p99": 100 * rate})
           for quant, j in (("gguf", 0.05), ("q4_k_m", 0.04)) for rate in (1.0, 2.0, 4.0)]


def _fronts(rows):
    return with_fronts(pd.DataFrame(rows))[0]


def test_quality_series_are_one_per_backend_and_variant_and_hover_names_the_configuration():
    fig = interactive.quality_energy(_fronts(MEASURED), "bbc-topics on AMD EPYC")
    series = {t.name: t for t in fig.data if t.meta}
    assert {name: t.legendgroup for name, t in series.items()} == {
        "minilm fp32 pytorch": "pytorch", "minilm int8 pytorch": "pytorch",
        "minilm fp32 pytorch heads 50%": "pytorch", "minilm int8 onnxruntime": "onnxruntime"}
    assert fig.layout.legend.groupclick == "toggleitem"  # a click hides one variant, not its whole backend
    int8 = series["minilm int8 pytorch"]
    assert list(int8.x) == [0.24, 0.14] and list(int8.text) == ["b1", "b8"]
    assert list(int8.error_x.array) == pytest.approx([0.024, 0.014])
    assert list(int8.error_x.arrayminus) == pytest.approx([0.024, 0.014])
    hover = int8.hovertext[1]
    for part in ("<b>minilm int8 pytorch, batch 8</b>", "model=minilm", "quant=int8", "prune=none",
                 "backend=pytorch", "scenario=classify", "batch_size=8", "seq_len=128", "threads=8",
                 "0.14 [0.13, 0.15] J/inference (measured by rapl)",
                 "accuracy: 0.950, 0.979 of fp32, fails its quality gate", "on the Pareto front"):
        assert part in hover, part
    assert "dominated" in series["minilm fp32 pytorch"].hovertext[0]
    front = next(t for t in fig.data if t.name == "Pareto front")
    assert list(front.x) == [0.14, 0.2, 0.24] and list(front.y) == [0.95, 0.96, 0.972]
    assert [shape.y0 for shape in fig.layout.shapes] == [pytest.approx(0.9603)]  # minilm's gate: 99% of 0.97
    # Buttons show one backend at a time; the others stay in the legend, the front stays drawn.
    buttons = {b.label: b.args[0]["visible"] for b in fig.layout.updatemenus[0].buttons}
    names = [t.name for t in fig.data]
    assert list(buttons) == ["all backends", "onnxruntime only", "pytorch only"]
    assert dict(zip(names, buttons["onnxruntime only"])) == {
        "minilm int8 onnxruntime": True, "minilm fp32 pytorch": "legendonly", "minilm fp32 pytorch heads 50%":
        "legendonly", "minilm int8 pytorch": "legendonly", "Pareto front": True}
    assert set(buttons["all backends"]) == {True}


def test_an_estimate_is_drawn_hollow_and_named_an_estimate_and_never_beside_a_measurement():
    rows = _fronts(ESTIMATED)
    for fig in (interactive.quality_energy(rows, "e"), interactive.latency_energy(rows, "e")):
        assert fig.layout.xaxis.title.text.startswith("ESTIMATED energy per inference")
        series = [t for t in fig.data if t.meta]
        assert {t.marker.symbol for t in series} == {"circle-open"}
        assert "0.086 [0.077, 0.095] J/inference (estimate: ESTIMATE, a power model, not a measurement)" in \
            series[0].hovertext[0]
        assert not fig.layout.updatemenus  # one backend: no buttons
    mixed = _fronts(MEASURED + ESTIMATED)
    with pytest.raises(ValueError, match="one plot per energy_source, got rapl, estimate"):
        interactive.quality_energy(mixed, "mixed")
    other_machine = _fronts(MEASURED + [_row(7, "fp32", 1, 0.97, 0.3, device_name="Intel Xeon")])
    with pytest.raises(ValueError, match="one plot per device_key"):
        interactive.latency_energy(other_machine, "two machines")


def test_serve_curves_toggle_both_panels_per_variant_and_hover_names_the_load():
    again = make_row(**{**SERVE, "serve_rate": 2.0, "energy_j_per_output_token": 0.035, "ttft_ms_p99": 210.0})
    fig = interactive.load_curves(_fronts(SERVING + [again]), "smollm2 on AMD EPYC")
    assert [(t.name, t.legendgroup, t.showlegend, t.yaxis) for t in fig.data] == [
        ("smollm2 gguf Q4_1 llamacpp", "smollm2 gguf Q4_1 llamacpp", None, "y"),
        ("smollm2 gguf Q4_1 llamacpp", "smollm2 gguf Q4_1 llamacpp", False, "y2"),
        ("smollm2 q4_k_m llamacpp", "smollm2 q4_k_m llamacpp", None, "y"),
        ("smollm2 q4_k_m llamacpp", "smollm2 q4_k_m llamacpp", False, "y2")]
    assert fig.layout.legend.groupclick == "togglegroup"  # a variant's entry hides both of its panels
    energy = fig.data[0]
    assert list(energy.x) == [1.0, 2.0, 4.0]
    assert list(energy.y) == pytest.approx([0.05, 0.03, 0.0125])  # at 2 req/s: the median of 0.025 and 0.035
    assert list(energy.error_y.array) == pytest.approx([0.0015, 0.0009, 0.000375])
    hover = energy.hovertext[1]
    for part in ("<b>smollm2 gguf Q4_1 llamacpp at 2 req/s</b>", "model=smollm2", "quant=gguf", "backend=llamacpp",
                 "scenario=serve", "prompt_len=32", "new_tokens=16", "serve_rate=2", "serve_mode=open",
                 "J/output token (measured by rapl), the median of 2 runs", "TTFT p99: 205 ms"):
        assert part in hover, part
    assert [a.text for a in fig.layout.annotations] == ["TTFT SLO 500 ms"]


def test_the_grid_intensity_is_printed_with_its_source_where_the_rows_have_one():
    rows = _fronts(MEASURED[:2]).assign(price_per_kwh=0.3, grid_gco2_per_kwh=200.0)
    assert cost_note(rows).endswith("at 0.3 per kWh and 200 gCO2e/kWh.")
    sourced = rows.assign(grid_source=["Ember 2024, Germany", "Ember 2024, Germany"])
    assert cost_note(sourced).endswith("at 0.3 per kWh and 200 gCO2e/kWh, Ember 2024, Germany.")
    two = sourced.assign(grid_gco2_per_kwh=[200.0, 50.0], grid_source=["Ember 2024, Germany", "Ember 2024, France"])
    assert cost_note(two).endswith("and 200 gCO2e/kWh, Ember 2024, Germany; 50 gCO2e/kWh, Ember 2024, France.")


class Page(HTMLParser):
    """The elements of a page and the text of plotly's hover layer, script text left aside."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, set[str], dict]] = []
        self.hover_text: list[str] = []
        self._open: list[tuple[str, bool]] = []  # (tag, inside the hover layer)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        self.elements.append((tag, classes, attrs))
        self._open.append((tag, bool(self._open and self._open[-1][1]) or "hoverlayer" in classes))

    def handle_endtag(self, tag):
        while self._open and self._open.pop()[0] != tag:
            pass  # void elements (meta, br) never close

    def handle_data(self, data):
        if self._open and self._open[-1][1]:
            self.hover_text.append(data)

    def count(self, tag: str, *classes: str) -> int:
        return sum(1 for t, c, _ in self.elements if t == tag and set(classes) <= c)


def _analysed(tmp_path):
    for row in MEASURED + ESTIMATED + SERVING:
        write_row(row, tmp_path / "tree" / row["run_id"])
    assert main([str(tmp_path / "tree"), "--out", str(tmp_path / "out")]) == 0
    return tmp_path / "out" / "report.html"


def test_the_report_inlines_plotly_once_and_refers_to_nothing_outside_itself(tmp_path):
    text = _analysed(tmp_path).read_text()
    page = Page(text)
    # Two plots per (eval, device, energy source): measured and estimated apart; one for the serve rows.
    assert page.count("div", "plotly-graph-div") == 5
    assert text.count(get_plotlyjs()) == 1
    refs = [(tag, value) for tag, _, attrs in page.elements for key, value in attrs.items() if key in ("src", "href")]
    # No CDN script, no stylesheet: only links to the PNGs written beside the page.
    assert refs and all(tag == "a" and value.endswith(".png") and "/" not in value for tag, value in refs), refs
    assert "The same as PNG (beside this file): <a href='quality_energy_bbc-topics_" in text


def _chromium(page, *flags: str) -> subprocess.CompletedProcess:
    browser = next(b for b in map(shutil.which, BROWSERS) if b)
    with tempfile.TemporaryDirectory() as profile:
        # Every host name fails to resolve: a page that needed a CDN would draw nothing.
        return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
                               "--window-size=1200,2600", "--virtual-time-budget=10000", *flags,
                               page.resolve().as_uri()], check=True, capture_output=True, text=True, timeout=180)


@pytest.mark.slow  # two Chromium runs on a 5 MB page: about 15 s on 2 cores
def test_the_report_plots_render_in_headless_chromium_offline(tmp_path):
    if not any(shutil.which(b) for b in BROWSERS):
        pytest.skip("no headless Chromium here (Debian: apt-get install chromium)")
    report = _analysed(tmp_path)
    # Hover the first plot's first point as a reader's mouse would, once the page has drawn.
    hovered = tmp_path / "out" / "hovered.html"
    script = ("<script>window.addEventListener('load', () => setTimeout(() => Plotly.Fx.hover("
              "document.getElementById('plot-0'), [{curveNumber: 0, pointNumber: 0}]), 100));</script>")
    hovered.write_text(report.read_text().replace("</body>", script + "</body>"))
    page = Page(_chromium(hovered, "--dump-dom").stdout)
    plots = page.count("div", "plotly-graph-div")
    assert plots == 5 and page.count("div", "plotly-graph-div", "js-plotly-plot") == plots  # each one drawn
    assert page.count("svg", "main-svg") >= 2 * plots
    # Every point: the quality and latency plots draw each scored row, the serve plot 2 panels x 2 variants x 3 loads.
    assert page.count("path", "point") == 2 * len(MEASURED + ESTIMATED) + 2 * len(SERVING)
    assert page.count("g", "errorbar") > 0
    hover = " ".join(page.hover_text)
    # The first plot is the estimated group's (estimate sorts before rapl), its first series bf16.
    for part in ("minilm bf16 pytorch, batch 1", "backend=pytorch", "quant=bf16",
                 "0.086 [0.077, 0.095] J/inference (estimate: ESTIMATE, a power model, not a measurement)"):
        assert part in hover, (part, hover)
    # The pixels: the plot's series colours are on screen, spread across the plot, not a blank frame.
    pixels = np.asarray(Image.open(screenshot(report, tmp_path / "report.png")).convert("RGB")).astype(np.int16)
    near = np.zeros(pixels.shape[:2], dtype=bool)
    for colour in interactive.PALETTE[:4]:
        near |= np.abs(pixels - [int(colour[i:i + 2], 16) for i in (1, 3, 5)]).max(axis=2) < 40
    xs = np.nonzero(near)[1]
    assert near.sum() > 300 and xs.max() - xs.min() > 200, near.sum()

"""Scenarios: what one request to the model is, and how the protocol measures it. One module per scenario.

A scenario module provides what `Scenario` declares. The registry is the package itself: a new module here
(plus its conf/scenario/<name>.yaml and its docs page) is a new scenario; nothing else names it.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from bench.errors import ConfigError


@dataclass(frozen=True)
class EnergyAxis:
    """The figure a scenario's rows are judged by (fronts, plots, recommendations) and what it is per."""

    column: str  # e.g. energy_j_per_inference
    unit: str  # e.g. "inference"
    request_column: str  # the joules of one whole request, what costs and carbon are charged per


@dataclass
class RunContext:
    """What a scenario gets from the orchestrator: the checked input and the means to build and measure."""

    cfg: Any  # BenchConfig
    device: str
    model_config: Any  # transformers PretrainedConfig
    tokenizer: Any  # None for random weights or eval=none
    eval_set: Any  # bench.quality.datasets.EvalSet, or None
    meter: Any  # bench.meters.EnergyMeter
    min_window_s: float
    # (model, example inputs) -> (backend running the variant, columns saying what was built)
    build: Callable[[Any, dict[str, Any]], tuple[Any, dict[str, Any]]]


class Scenario(Protocol):
    EVAL_KINDS: tuple[str, ...]  # the eval kinds that can score it ("none" included)
    AXIS: EnergyAxis
    CAUSAL_LM: bool  # load the model with its language-model head
    COLUMNS: list[Any]  # bench.row.Column: the row columns only this scenario writes
    SUMMARY_COLUMNS: dict[str, str]  # row column -> heading, for the table a sweep prints

    def validate(self, cfg: Any) -> None:
        """Checks of the scenario's own settings that need nothing but the config."""

    def check_model(self, cfg: Any) -> tuple[Any, str, str]:
        """The architecture config, the resolved reference and revision; raises ConfigError if unfit."""

    def shape(self, cfg: Any) -> dict[str, int]:
        """The request's shape as row columns (part of the configuration key)."""

    def run(self, model: Any, ctx: RunContext) -> tuple[dict[str, Any], list[Any], Any]:
        """Builds the variant, measures it with the protocol: (row columns, each phase's Measurement, backend)."""

    def progress(self, row: dict[str, Any]) -> str:
        """The line logged when a run ends."""


@functools.cache
def names() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def get(name: str) -> Scenario:
    if name not in names():
        raise ConfigError(f"scenario={name!r} is not valid; choose one of: {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}")  # type: ignore[return-value]


def eval_kinds() -> tuple[str, ...]:
    return tuple(sorted({kind for name in names() for kind in get(name).EVAL_KINDS}))

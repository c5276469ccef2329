"""The harness's own errors. Nothing here imports Hydra or torch, so meters and the pytest fixture can raise them."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input, reported before any work starts: the message names the bad value and the valid choices."""


class MeterUnavailable(RuntimeError):
    """The source cannot be read on this machine; the message says why and, where there is one, the fix."""

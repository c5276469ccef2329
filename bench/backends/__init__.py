"""Backends: run one prepared batch of a variant on a device, and synchronise it."""

from __future__ import annotations

from typing import Any, Callable, Protocol


class Backend(Protocol):
    name: str

    def prepare(self, inputs: dict[str, Any]) -> Callable[[], Any]:
        """Everything but the forward pass, done once: returns the call the windows repeat."""

    def forward(self, inputs: dict[str, Any]) -> Any:
        """One batch through the variant, returning the model's outputs (for the quality eval)."""

    def sync(self) -> None:
        """Block until the device has finished the work already issued."""

"""Energy per inference, per token and per unit of quality, measured by a Hydra-driven harness."""

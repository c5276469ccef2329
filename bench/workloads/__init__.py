"""Workloads: the inputs a run feeds its backend, and the exact count of samples and tokens per call."""

"""Pipelines: multi-stage experiments (the demo; the two-step experiment with its baselines)
that call the layers below and hand their results to :mod:`paravox.report`."""

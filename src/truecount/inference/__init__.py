"""From a model to gated results: samplers, the diagnostics gate and the quantity table.

``fitter`` (compile once per structure, fit any case of it; derived and predictive draws),
``jaxfit`` and ``_jax`` (the default sampler's XLA programs), ``diagnostics`` (the gate),
``results`` (quantity table, summary) and ``analysis`` (the one pipeline: fit, gate, table,
summary as a frozen :class:`~truecount.inference.analysis.Analysis`).
"""

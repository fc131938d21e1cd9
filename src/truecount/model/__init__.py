"""The model: capacity arithmetic, the mathematics written once, the PyMC model and simulation.

``capacity`` (Erlang-B and capacity in plain NumPy/Numba), ``bounds`` (a case's capacity table),
``equations`` (every equation of the model, over NumPy or PyTensor), ``data`` (a case as the
model's inputs), ``build`` (the PyMC model wrapping the equations) and ``simulate`` (the model's
generative story run forwards: parameter draws, counts, published claims and reports).
"""

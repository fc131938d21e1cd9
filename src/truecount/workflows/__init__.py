"""Many fits and other models of a campaign: the runner, calibration, sensitivity, simulation.

``runner`` (many fits, here or on Dask, each structure compiled once), ``calibration`` (SBC and
coverage against simulated campaigns), ``sensitivity`` (alternative specs and power-scaling) and
``des`` (a discrete-event call centre, an independent simulator for calibration).
"""

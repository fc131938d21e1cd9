"""Many fits: the runner (here or on Dask), calibration, sensitivity and the discrete-event simulator.
"""

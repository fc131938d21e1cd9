"""truecount: how many people really enrolled in a recruitment drive.

The data flow is one way: ``case + spec -> model -> posterior -> gate -> results -> report``.
This package so far holds the first steps: case files (:func:`load_case`), model specs
(:func:`load_spec`) and the capacity arithmetic they rest on (:mod:`truecount.model.capacity`).
"""

from importlib.metadata import PackageNotFoundError, version

from truecount.errors import InputError, TruecountError
from truecount.inputs.case import Case, load_case
from truecount.inputs.spec import Spec, load_spec

try:
    __version__ = version("truecount")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["Case", "InputError", "Spec", "TruecountError", "__version__", "load_case", "load_spec"]

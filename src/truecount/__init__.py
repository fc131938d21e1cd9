"""truecount: how many people really enrolled in a recruitment drive.

The data flow is one way: ``case + spec -> model -> posterior -> gate -> results -> report``, in
subpackages that follow it: :mod:`truecount.inputs` (case files, :func:`load_case`; model specs,
:func:`load_spec`), :mod:`truecount.model` (capacity arithmetic, the equations written once, the
PyMC model, simulation), :mod:`truecount.inference` (samplers, the gate, the analysis),
:mod:`truecount.outputs` (run folders, the report, figures) and :mod:`truecount.workflows` (many
fits: calibration, sensitivity). Every quantity is named once, in :mod:`truecount.quantities`.
Importing this package loads only the input layer; the rest is imported where it is used.
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

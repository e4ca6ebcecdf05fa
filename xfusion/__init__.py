"""XFusion: spatiotemporal fusion of two-camera x-ray videos, built on BasicSR.

Importing the package registers every network, dataset, model and metric with BasicSR.
"""
from xfusion import basicsr_compat  # noqa: F401  (must run before anything imports basicsr)

# isort: split
from xfusion import archs, data, metrics, models  # noqa: F401  (registers the names)
from xfusion.version import __version__

__all__ = ['__version__']

"""XFusion: spatiotemporal fusion of two-camera x-ray videos, built on BasicSR.

Importing the package registers every network, dataset, model and metric with BasicSR: as in
BasicSR itself, every ``archs/*_arch.py``, ``data/*_dataset.py`` and ``models/*_model.py`` is
imported, so a new network family is one new ``*_arch.py`` file (and an option file naming it).
"""
import importlib
from pathlib import Path

from xfusion import basicsr_compat  # noqa: F401  (must run before anything imports basicsr)

# isort: split
from xfusion import metrics  # noqa: F401  (registers the metrics)
from xfusion.version import __version__

for _package, _suffix in (('archs', '_arch.py'), ('data', '_dataset.py'), ('models', '_model.py')):
    for _module in sorted((Path(__file__).parent / _package).glob('*' + _suffix)):
        importlib.import_module(f'xfusion.{_package}.{_module.name[:-3]}')

__all__ = ['__version__']

"""Option files: reading them, and recording the options a run used.

- ``load_option_file``: a BasicSR option file as a dict (the one place that reads YAML options).
- ``save_effective_options``: the options a run really used (after ``--force_yml``), written beside
  its checkpoints as ``models/options.yml``; ``xfusion.checkpoint`` reads those first.
- ``packaged_option_file``: the option files that ship with the package (``options/`` of the
  repository), found in a checkout and in an installed package alike.

Checking options before a run is ``xfusion.options_check``.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from xfusion.errors import InputError

EFFECTIVE_OPTIONS = 'options.yml'  # in experiments/<name>/models/, beside the checkpoints
RUNTIME_KEYS = ('is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path')  # set per run by BasicSR


def load_option_file(path: str | Path) -> dict:
    """A BasicSR option file as a dict (YAML, read with BasicSR's ordered loader)."""
    from basicsr.utils.options import ordered_yaml
    path = Path(path)
    try:
        with open(path) as f:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
    except FileNotFoundError:
        raise InputError(f'{path}: option file not found') from None
    except yaml.YAMLError as error:
        raise InputError(f'{path}: not a valid YAML file ({" ".join(str(error).split())})') from None
    if not isinstance(opt, dict):
        raise InputError(f'{path}: an option file must be a YAML mapping of options')
    return opt


def _plain(value):
    """Options as plain dicts and lists, for yaml.safe_dump."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_effective_options(opt: dict) -> Path:
    """Write the options of a run, as BasicSR parsed them (``--force_yml`` applied), beside its checkpoints.

    BasicSR copies the raw option file into the experiment folder; a network trained with
    overrides (``--force_yml network_g:num_feat=...``) could not be rebuilt from that copy.
    Written atomically, and only when it changes (on rank 0, where the checkpoints are written).
    """
    path = Path(opt['path']['models']) / EFFECTIVE_OPTIONS
    effective = _plain({k: v for k, v in opt.items() if k not in RUNTIME_KEYS})
    text = ('# The options this run used, after --force_yml overrides (written by xfusion beside the\n'
            '# checkpoints; loading a checkpoint takes its network options from here).\n'
            + yaml.safe_dump(effective, sort_keys=False))
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def packaged_option_file(relative: str) -> Path:
    """An option file that ships with xfusion, e.g. ``'demo/finetune_xray_demo.yml'``.

    In an installed package the copy setup.py puts at ``xfusion/option_files/``; in a checkout (or an
    editable install) the repository's ``options/``.
    """
    package = Path(__file__).resolve().parent
    for root in (package / 'option_files', package.parent / 'options'):
        if (root / relative).is_file():
            return root / relative
    raise InputError(f'{relative}: no such option file among those that ship with xfusion')

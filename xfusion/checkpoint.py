"""Load a trained network from a BasicSR checkpoint, with its network options.

A checkpoint ``experiments/<name>/models/net_g_*.pth`` brings its network options, unless an
option file is given: first from the options the run really used (``models/options.yml``, written
beside the checkpoints, ``--force_yml`` overrides included), else from the option file BasicSR
copied into the experiment folder (older experiments). Checkpoints of the original XFusion
``EDVRSTF`` load as they are. ``load_network`` takes a packaged model's name (``xfusion.pretrained``) as well as
a path.
"""
from __future__ import annotations

from pathlib import Path

import torch
from basicsr.archs import build_network

from xfusion.archs.legacy import rename_parameters, upgrade_network_options
from xfusion.errors import InputError
from xfusion.options import EFFECTIVE_OPTIONS, load_option_file
from xfusion.pretrained import model_file


class CheckpointError(InputError):
    """A checkpoint that cannot be used: the message names the file and the fix."""


def find_option_file(checkpoint: str | Path) -> Path:
    """The options of a checkpoint's run: ``options.yml`` beside it, else the option file of its experiment."""
    checkpoint = Path(checkpoint)
    if (checkpoint.parent / EFFECTIVE_OPTIONS).is_file():
        return checkpoint.parent / EFFECTIVE_OPTIONS
    exp_dir = checkpoint.parent.parent if checkpoint.parent.name == 'models' else checkpoint.parent
    candidates = sorted(exp_dir.glob('*.yml')) + sorted(exp_dir.glob('*.yaml'))
    if not candidates:
        raise CheckpointError(f'{checkpoint}: no option file in {exp_dir} to take the network options from; '
                              'give one with --opt')
    if len(candidates) > 1:
        names = ', '.join(c.name for c in candidates)
        raise CheckpointError(f'{checkpoint}: several option files in {exp_dir} ({names}); choose one with --opt')
    return candidates[0]


def network_options(option_file: str | Path) -> dict:
    """``network_g`` of an option file, as today's networks take it (``xfusion.archs.legacy``)."""
    opt = load_option_file(option_file)
    if 'network_g' not in opt:
        raise CheckpointError(f'{option_file}: no network_g section')
    try:
        return upgrade_network_options(opt['network_g'])
    except ValueError as error:
        raise CheckpointError(f'{option_file}: {error}') from None


def state_dict_of(checkpoint: str | Path) -> tuple[dict, str]:
    """The parameters of a checkpoint: ``params_ema`` when present, else ``params`` (or a bare state dict)."""
    try:
        loaded = torch.load(checkpoint, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f'{checkpoint}: checkpoint not found') from None
    except Exception as error:  # torch's own text runs to several lines and names no file
        raise CheckpointError(f'{checkpoint}: unreadable checkpoint ({type(error).__name__}): not network weights '
                              'saved by torch.save; give a net_g_*.pth of a training run') from error
    for key in ('params_ema', 'params'):
        if isinstance(loaded, dict) and key in loaded:
            state = loaded[key]
            break
    else:
        state, key = loaded, 'state dict'
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{checkpoint}: not a network checkpoint (expected {{"params": state_dict}})')
    return rename_parameters({k[7:] if k.startswith('module.') else k: v for k, v in state.items()}), key


def check_layout(net: torch.nn.Module, state: dict, checkpoint: str | Path) -> None:
    """Raise naming the first parameter whose name or shape differs between network and checkpoint."""
    expected = net.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            raise CheckpointError(f'{checkpoint}: another network layout: parameter {name} is missing '
                                  '(do the network options match the checkpoint?)')
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f'{checkpoint}: another network layout: parameter {name} has shape '
                                  f'{tuple(state[name].shape)}, the network expects {tuple(tensor.shape)}')
    extra = [k for k in state if k not in expected]
    if extra:
        raise CheckpointError(f'{checkpoint}: another network layout: unexpected parameter {extra[0]}')


def load_network(checkpoint: str | Path, option_file: str | Path | None = None,
                 device: str | torch.device = 'cpu', **overrides) -> tuple[torch.nn.Module, dict]:
    """Build the network of a checkpoint (a path, or a packaged model's name) and load its weights strictly;
    returns (net in eval mode, network options)."""
    checkpoint = model_file(checkpoint)
    option_file = option_file or find_option_file(checkpoint)
    net_opt = {**network_options(option_file), **overrides}
    state, _ = state_dict_of(checkpoint)
    try:
        net = build_network(dict(net_opt))
    except (TypeError, ValueError) as error:  # options no network of today takes (xfusion.archs.legacy)
        raise CheckpointError(f'{option_file}: {error}') from None
    check_layout(net, state, checkpoint)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval(), net_opt

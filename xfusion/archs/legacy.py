"""Option and parameter names of earlier versions of the networks, mapped to today's: the one place that
knows them, so that the checkpoints and option files of earlier runs still load.

- ``RETIRED_OPTIONS``: PropSTF options that were switches once and are now simply what the network does (or
  what it no longer does). An option file may still name one at that value; another value is an error that
  says what changed, since no network of today can do what it asks.
- ``upgrade_network_options``: ``network_g`` of an earlier option file as today's network takes it (the LR-only
  variant was PropSTF with ``num_frame_hi: 0``; it is ``PropVSR`` now).
- ``PARAMETER_RENAMES``: parameters that moved into a module of their own (the blend of sources, the still
  gate); ``rename_parameters`` maps a state dict of an earlier version to today's names.
"""
from __future__ import annotations

from xfusion.archs.blend import SOURCES

# option -> (the value PropSTF now always has, why: the section of docs/experiments.md)
RETIRED_OPTIONS = {
    'num_frame_hi': (2, 'the LR-only variant is its own network: type PropVSR'),
    'global_motion': (True, 'the whole-frame motion is always measured (section 1)'),
    'refine_at_hr': (True, 'the shifts are always refined against the HR key frames (section 1)'),
    'denoised_temporal': (True, 'the temporal source is always denoised (section 3)'),
    'still_gate': (True, 'the still gate is always there (section 2)'),
    'sources': (list(SOURCES), 'the blend always has every source (section 3)'),
    'deform_align': (False, 'deformable alignment was removed: it gained less than the spread between seeds '
                            '(section 4); a checkpoint trained with it loads only in the xfusion it was trained with'),
    'context': (0, 'only the LR-only variant PropVSR reads context frames'),
}

PARAMETER_RENAMES = {
    'blend_logits.weight': 'blend.logits.weight',
    'blend_logits.bias': 'blend.logits.bias',
    'still_gate.weight': 'still_gate.conv.weight',
    'still_gate.bias': 'still_gate.conv.bias',
}


def check_retired_options(network: str, options: dict) -> None:
    """Raise for an option that is not an argument of the network: unknown, or retired at another value."""
    for name, value in options.items():
        if name not in RETIRED_OPTIONS:
            raise TypeError(f'{network}: unexpected option {name!r}')
        fixed, why = RETIRED_OPTIONS[name]
        if (list(value) if isinstance(value, (list, tuple)) else value) != fixed:
            raise ValueError(f'{network}: {name}: {value!r} is no longer offered ({why})')


def upgrade_network_options(net_opt: dict) -> dict:
    """``network_g`` of an option file of any version -> today's (a copy)."""
    net_opt = dict(net_opt)
    if net_opt.get('type') == 'PropSTF' and net_opt.get('num_frame_hi') == 0:
        net_opt['type'] = 'PropVSR'
        for name in ('num_frame_hi', 'hr_encoder', 'sources', 'denoised_temporal', 'still_gate', 'refine_at_hr'):
            net_opt.pop(name, None)  # without key frames these never did anything
        for name in ('global_motion', 'deform_align'):
            if net_opt.pop(name, False):
                raise ValueError(f'PropSTF with num_frame_hi 0 and {name}: true is no longer offered '
                                 '(the LR-only variant PropVSR has neither)')
    return net_opt


def rename_parameters(state: dict, prefix: str = '') -> dict:
    """A state dict with the parameter names of earlier versions renamed to today's, in place (also returned)."""
    for old, new in PARAMETER_RENAMES.items():
        if prefix + old in state and prefix + new not in state:
            state[prefix + new] = state.pop(prefix + old)
    return state

"""The networks that ship inside the package, trained on the project's synthetic x-ray data.

    xfusion models                 # the packaged networks, a line each
    xfusion models propstf         # one model card
    xfusion fuse ...               # without --model: the recommended one

Each lives in a folder of its own, ``xfusion/pretrained/<name>/``:

- ``net_g.pth``: the weights only, ``{'params': state_dict}`` as BasicSR saves them;
- ``options.yml``: the options of the training run that made them (its ``network_g`` rebuilds the network,
  as for any checkpoint beside its ``options.yml``);
- ``card.json``: the model card's record (training data, recipe, the command that retrains it, its table on the
  test families, its limits), rendered into ``card.md`` by ``benchmarks/render_results.py``.

``index.json`` lists them and names the recommended one. All of it is written by ``scripts/package_models.py``.
A ``--model`` value, a checkpoint path elsewhere, may name a packaged model instead (``model_file``); so may
``path.pretrain_network_g`` of a training option file, to fine-tune from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from xfusion.errors import InputError

FOLDER = Path(__file__).resolve().parent
INDEX = FOLDER / 'index.json'
WEIGHTS, OPTIONS, CARD, CARD_PAGE = 'net_g.pth', 'options.yml', 'card.json', 'card.md'


@dataclass(frozen=True)
class PackagedModel:
    """One packaged network: its name and folder, the files in it, and its card."""
    name: str
    folder: Path

    @property
    def checkpoint(self) -> Path:
        return self.folder / WEIGHTS

    @property
    def option_file(self) -> Path:
        return self.folder / OPTIONS

    @property
    def card(self) -> dict:
        return json.loads((self.folder / CARD).read_text())

    @property
    def card_page(self) -> Path:
        return self.folder / CARD_PAGE


def _index() -> dict:
    return json.loads(INDEX.read_text()) if INDEX.is_file() else {'recommended': None, 'models': []}


def packaged_models() -> dict[str, PackagedModel]:
    """{name: model} of every packaged network, the recommended one first."""
    return {name: PackagedModel(name, FOLDER / name) for name in _index()['models']}


def recommended_model() -> str:
    """The name of the packaged network that ``fuse``, ``check`` and ``evaluate`` use without ``--model``."""
    name = _index()['recommended']
    if name is None:
        raise InputError('this installation carries no packaged network: give a checkpoint with --model')
    return name


def packaged_model(name: str) -> PackagedModel:
    """The packaged network called ``name``; an InputError naming those there are otherwise."""
    models = packaged_models()
    if name not in models:
        raise InputError(f'{name!r} is not a packaged model; the packaged models are {", ".join(models) or "none"} '
                         '(xfusion models lists them)')
    return models[name]


def model_file(value: str | Path) -> Path:
    """The checkpoint a ``--model`` value names: a file, else a packaged model's weights.

    A path that exists is always the file (a packaged name never hides one); anything else must be a packaged
    model's name, or it is an InputError naming both readings."""
    path = Path(value)
    if path.exists():
        return path
    models = packaged_models()
    if str(value) in models:
        return models[str(value)].checkpoint
    raise InputError(f'{value}: checkpoint not found, and not the name of a packaged model '
                     f'({", ".join(models) or "none"}; xfusion models lists them)')

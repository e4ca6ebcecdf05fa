"""``xfusion models``: the networks that ship inside the package (``xfusion.pretrained``), a line each, or one
model card whole.

A packaged model's name works wherever a checkpoint does: ``--model propstf`` in ``fuse``, ``check`` and
``evaluate`` (which use the recommended one when given no ``--model``), and ``path.pretrain_network_g: propstf``
in a training option file, to fine-tune from it.
"""
from __future__ import annotations

import argparse

from xfusion.pretrained import packaged_model, packaged_models, recommended_model

HELP = 'list the packaged pretrained networks, or show the model card of one'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('name', nargs='?', default=None, help='a packaged model: show its card')


def headline(card: dict) -> str:
    """Its test-family figure in the demo setting against the baseline it is measured against."""
    cell = card['headline']
    return (f"{cell['psnr']:.2f} dB against {cell['baseline']} {cell['baseline_psnr']:.2f} dB "
            f"(test families, period {cell['period']}, LR noise b0 {cell['b0']})")


def run(args: argparse.Namespace) -> int:
    if args.name:
        model = packaged_model(args.name)
        print(model.card_page.read_text().rstrip())
        print(f'\nfiles: {model.folder} ({model.checkpoint.name}, {model.option_file.name})')
        return 0
    models = packaged_models()
    if not models:
        print('this installation carries no packaged network')
        return 0
    recommended = recommended_model()
    for name, model in models.items():
        card = model.card
        mark = ' (recommended: the default of fuse, check and evaluate)' if name == recommended else ''
        print(f"{name}{mark}\n  {card['network']}, {card['parameters'] / 1e6:.2f} M parameters, "
              f"{model.checkpoint.stat().st_size / 1e6:.1f} MB: {card['role']}\n  {headline(card)}")
    print('\nxfusion models NAME shows a model card; --model NAME uses one.')
    return 0

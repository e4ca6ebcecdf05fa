"""Train with BasicSR's pipeline: python train.py -opt options/pretrain_reds.yml [--auto_resume]."""
from os import path as osp

import xfusion  # noqa: F401  (first: adjusts BasicSR and registers the networks, datasets, models, metrics)

# isort: split
from basicsr.train import train_pipeline

if __name__ == '__main__':
    train_pipeline(osp.dirname(osp.abspath(__file__)))

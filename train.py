"""Train with BasicSR's pipeline: python train.py -opt options/pretrain_reds.yml [--auto_resume]."""
from os import path as osp

from basicsr.train import train_pipeline

import xfusion  # noqa: F401  (registers the networks, datasets, models and metrics)

if __name__ == '__main__':
    train_pipeline(osp.dirname(osp.abspath(__file__)))

"""Evaluate an experiment's newest checkpoint: python test.py -opt options/finetune_xray.yml."""
from os import path as osp

from xfusion.test_pipeline import test_pipeline

if __name__ == '__main__':
    test_pipeline(osp.dirname(osp.abspath(__file__)))

"""Evaluate an experiment's newest checkpoint: python test.py -opt options/finetune_xray.yml."""
import sys
from os import path as osp

from xfusion.pipelines import test

if __name__ == '__main__':
    sys.exit(test(osp.dirname(osp.abspath(__file__))))

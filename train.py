"""Train with BasicSR's pipeline: python train.py -opt options/pretrain_reds.yml [--auto_resume]."""
import sys
from os import path as osp

from xfusion.pipelines import train

if __name__ == '__main__':
    sys.exit(train(osp.dirname(osp.abspath(__file__))))

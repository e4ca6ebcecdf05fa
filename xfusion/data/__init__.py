"""Datasets; importing this package registers them with BasicSR's DATASET_REGISTRY."""
from xfusion.data import reds_stf_dataset, stf_sequence_test_dataset, xray_stf_dataset  # noqa: F401

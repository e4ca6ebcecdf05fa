"""Datasets (DATASET_REGISTRY): every ``*_dataset.py`` here is imported when xfusion is. Frames are read by
``xfusion.io``."""

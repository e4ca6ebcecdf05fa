"""Datasets (DATASET_REGISTRY) and frame IO: every ``*_dataset.py`` here is imported when xfusion is."""

"""Synthetic data: the embedded default when REDS or x-ray data are not at hand."""

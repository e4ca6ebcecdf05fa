"""Models (MODEL_REGISTRY): every ``*_model.py`` here is imported when xfusion is, which registers it."""

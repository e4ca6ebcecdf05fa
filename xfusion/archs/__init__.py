"""Networks (ARCH_REGISTRY): every ``*_arch.py`` here is imported when xfusion is, which registers it."""

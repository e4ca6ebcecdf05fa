"""Models; importing this package registers them with BasicSR's MODEL_REGISTRY."""
from xfusion.models import stf_model  # noqa: F401

"""Networks; importing this package registers them with BasicSR's ARCH_REGISTRY."""
from xfusion.archs import (
    edvrstf_arch,  # noqa: F401
    swinstf_arch,  # noqa: F401
)

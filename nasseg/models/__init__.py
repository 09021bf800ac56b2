"""Model families: ``build(config)`` turns an ``ArchConfig`` into an ``nn.Module``.

Importing this package imports every family module, and each registers its builder with
``register_family``: a new family is one module here plus its line below.
"""

# In the order the families are listed everywhere (the order of the papers): each import registers one.
from nasseg.models import espnet  # isort: skip
from nasseg.models import ejpnet  # isort: skip
from nasseg.models import fassd  # isort: skip
from nasseg.models import jetseg  # isort: skip
from nasseg.models import pyramid_shufflenet  # isort: skip
from nasseg.models.registry import (
    ArchConfig,
    Family,
    Findings,
    build,
    check,
    family_names,
    get_family,
    register_family,
)

__all__ = [
    "ArchConfig",
    "Family",
    "Findings",
    "build",
    "check",
    "ejpnet",
    "espnet",
    "family_names",
    "fassd",
    "get_family",
    "jetseg",
    "pyramid_shufflenet",
    "register_family",
]

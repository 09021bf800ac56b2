"""Search spaces as data: parameter domains, published baselines and their figures."""

from nasseg.spaces.space import (
    SPACES_DIR,
    Draw,
    SearchSpace,
    all_spaces,
    config_from_dict,
    find_baseline,
    load_architecture,
    load_space,
    space_names,
    validate_config,
)

__all__ = [
    "SPACES_DIR",
    "Draw",
    "SearchSpace",
    "all_spaces",
    "config_from_dict",
    "find_baseline",
    "load_architecture",
    "load_space",
    "space_names",
    "validate_config",
]

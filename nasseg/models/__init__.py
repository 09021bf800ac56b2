"""Model families: ``build(config)`` turns an ``ArchConfig`` into an ``nn.Module``."""

from nasseg.models.registry import ArchConfig, Family, Findings, build, check, family_names, get_family

__all__ = ["ArchConfig", "Family", "Findings", "build", "check", "family_names", "get_family"]

"""nasseg: hardware-aware design-space exploration for real-time semantic segmentation."""

__version__ = "0.1.0"

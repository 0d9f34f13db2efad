from . import safe_checkpoint
from . import backbone_converter

__all__ = ["safe_checkpoint", "backbone_converter"]

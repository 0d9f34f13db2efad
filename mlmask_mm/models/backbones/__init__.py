from .vitdet import ViTDet

__all__ = ['ViTDet']

from .texture_masker import TextureMasker

__all__ = ['TextureMasker']

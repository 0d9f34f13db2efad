from .mlo_cls_head import MLOClsHead

__all__ = ['MLOClsHead']

from .mask_grid import render_mask_grid, save_png

__all__ = ['render_mask_grid', 'save_png']

"""Save a PNG of masks and reconstructions during/after training."""
import os.path as osp
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mlmask_mm.registry import HOOKS
from mlmask_mm.visualization import render_mask_grid, save_png
from mlmask_mm.utils.rng_state import get_rng_state, set_rng_state


@HOOKS.register_module()
class MaskVisualizationHook(Hook):
    """Render ``num_images`` fixed training images with their masks.

    Writes ``<work_dir>/masks_iter_<n>.png`` every ``interval`` iterations
    (0 = never) and ``<work_dir>/masks_final.png`` after training.  The images
    are ``num_images`` samples spread evenly over the training set, through
    its pipeline, taken once so every picture shows the same inputs.
    """

    priority = 'LOW'

    def __init__(self, num_images: int = 8, interval: int = 0,
                 seed: int = 0) -> None:
        self.num_images = num_images
        self.interval = interval
        self.seed = seed
        self._batch: Optional[dict] = None

    def _fixed_batch(self, runner) -> dict:
        if self._batch is None:
            dataset = runner.train_dataloader.dataset
            n = min(self.num_images, len(dataset))
            # spread over the dataset (folder datasets are sorted by class)
            idx = torch.linspace(0, len(dataset) - 1, n).round().long()
            samples = [dataset[int(i)] for i in idx]
            self._batch = runner.train_dataloader.collate_fn(samples)
        return self._batch

    def render(self, runner, name: str) -> str:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        # the pipeline and the masker draw random numbers: leave every RNG
        # as it was, so a picture never changes training (exact resume)
        state = get_rng_state()
        try:
            torch.manual_seed(self.seed)  # comparable pictures over time
            data = model.data_preprocessor(self._fixed_batch(runner), False)
            grid = render_mask_grid(model, data['inputs'],
                                    data['data_samples'])
        finally:
            set_rng_state(state)
        path = osp.join(runner.work_dir, name)
        save_png(grid, path)
        runner.logger.info(f'mask picture saved to {path}')
        return path

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.interval and self.every_n_train_iters(runner, self.interval):
            if runner.rank == 0:
                self.render(runner, f'masks_iter_{runner.iter + 1}.png')

    def after_train(self, runner) -> None:
        if runner.rank == 0:
            self.render(runner, 'masks_final.png')

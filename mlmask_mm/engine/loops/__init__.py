from .mlo_loop import CyclingIterator, MLOTrainLoop

__all__ = ['CyclingIterator', 'MLOTrainLoop']

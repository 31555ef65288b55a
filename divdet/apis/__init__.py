"""Shared entry points of divdet's command line tools and demos."""
from .runner import apply_test_args, apply_train_args, build_runner, dump_metric, load_config

__all__ = ['apply_test_args', 'apply_train_args', 'build_runner', 'dump_metric', 'load_config']

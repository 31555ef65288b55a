"""Shared entry points of divdet's command line tools and demos."""
from .runner import (
                     add_common_args,
                     apply_test_args,
                     apply_train_args,
                     build_runner,
                     dump_metric,
                     load_config,
                     parse_cli,
                     run_main,
)

__all__ = [
    'add_common_args', 'apply_test_args', 'apply_train_args', 'build_runner', 'dump_metric',
    'load_config', 'parse_cli', 'run_main'
]

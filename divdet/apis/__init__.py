"""Shared entry points of divdet's command line tools and demos."""
from .cli import ArgumentParser, KeyValueAction
from .runner import (
                     add_common_args,
                     apply_test_args,
                     apply_train_args,
                     build_runner,
                     dump_metric,
                     load_config,
                     parse_cli,
                     run_main,
                     write_dump,
)

__all__ = [
    'ArgumentParser', 'KeyValueAction', 'add_common_args',
    'apply_test_args', 'apply_train_args', 'build_runner', 'dump_metric',
    'load_config', 'parse_cli', 'run_main', 'write_dump'
]

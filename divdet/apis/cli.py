"""The command line of divdet's tools: every usage error is one line.

argparse prints its usage over several lines before the error; divdet's tools
print ``divdet: error: PROG: MESSAGE (see PROG --help)`` and exit with status 2,
as for every other bad input. ``KEY=VALUE`` options (``--cfg-options``,
``--fusion-options``) refuse an item without ``=`` in the same way (mmengine's
``DictAction`` stops with a ``ValueError`` traceback).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

from mmengine.config import DictAction


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with one-line errors."""

    def error(self, message: str):
        prog = osp.basename(self.prog)
        print(f'divdet: error: {prog}: {message} (see {prog} --help)', file=sys.stderr,
              flush=True)
        sys.exit(2)


class KeyValueAction(DictAction):
    """mmengine's ``DictAction`` (``KEY=VALUE`` items), refusing an item without ``=``."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values if isinstance(values, list) else [values]:
            key, sep, _ = item.partition('=')
            if not sep or not key.strip():
                parser.error(f'{option_string}: expected KEY=VALUE items, found {item!r}')
        super().__call__(parser, namespace, values, option_string)


def integer(low: int = 0, high: int | None = None):
    """An argparse ``type``: an integer in ``[low, high]`` (a usage error otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected an integer, found {text!r}') from None
        if value < low or (high is not None and value > high):
            bound = f'>= {low}' if high is None else f'in [{low}, {high}]'
            raise argparse.ArgumentTypeError(f'expected an integer {bound}, found {value}')
        return value
    parse.__name__ = 'integer'
    return parse


def number(interval: str):
    """An argparse ``type``: a number in ``interval`` (:func:`divdet.utils.ranges.check_range`)."""
    from divdet.utils.errors import ConfigError
    from divdet.utils.ranges import check_range

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a number, found {text!r}') from None
        try:
            return check_range('the value', value, interval)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    parse.__name__ = 'number'
    return parse


#: the seeds numpy and torch accept
SEED = integer(0, 2**32 - 1)


__all__ = ['ArgumentParser', 'KeyValueAction', 'integer', 'number', 'SEED']

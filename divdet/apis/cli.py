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


__all__ = ['ArgumentParser', 'KeyValueAction']

"""Range checks for the numbers of configs and command lines.

A value outside its range is refused with one :class:`ConfigError` line naming
the setting, the range and the value (e.g. ``test_cfg.ensemble.iou_thr must be
in (0, 1], found 2``); nothing is clipped silently. One place holds the ranges
of the post-processing and fusion settings (:data:`POST_PROCESSING`).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional

from divdet.utils.errors import ConfigError

#: interval, integer? for the post-processing and fusion settings of every head and fuser
POST_PROCESSING = {
    'iou_thr': ('(0, 1]', False),
    'iou_threshold': ('(0, 1]', False),
    'score_thr': ('[0, 1)', False),
    'skip_box_thr': ('[0, 1)', False),
    'min_score': ('[0, 1)', False),
    'max_per_img': ('[1, inf)', True),
    'sigma': ('(0, inf)', False),
}


def check_range(where: str, value: Any, interval: str, integer: bool = False) -> Any:
    """Return ``value`` if it is a number (an integer if asked) in ``interval``.

    Args:
        where: the setting's name as the user wrote it, e.g. ``'test_cfg.score_thr'``.
        value: the value found.
        interval: ``'[a, b]'``, ``'(a, b]'`` ... with ``inf`` for no bound.
        integer: whether only integers are allowed.

    Raises:
        ConfigError: not a number, not an integer, NaN, or outside the interval.
    """
    kind = 'an integer' if integer else 'a number'
    ok_type = (isinstance(value, numbers.Integral) if integer else
               isinstance(value, numbers.Real)) and not isinstance(value, bool)
    if not ok_type or (not integer and math.isnan(float(value))):
        raise ConfigError(f'{where} must be {kind} in {interval}, found {value!r}')
    low, high = (float(v) for v in interval[1:-1].split(','))
    below = value < low if interval[0] == '[' else value <= low
    above = value > high if interval[-1] == ']' else value >= high
    if below or above:
        raise ConfigError(f'{where} must be in {interval}, found {value!r}')
    return value


def check_post_processing(cfg: Optional[dict], where: str) -> None:
    """Check every setting of :data:`POST_PROCESSING` in ``cfg`` (and its sub-dicts)."""
    if not isinstance(cfg, dict):
        return
    for key, value in cfg.items():
        if isinstance(value, dict):
            check_post_processing(value, f'{where}.{key}')
        elif key in POST_PROCESSING and value is not None:
            interval, integer = POST_PROCESSING[key]
            check_range(f'{where}.{key}', value, interval, integer)
    nms_pre = cfg.get('nms_pre')
    if nms_pre is not None and nms_pre != -1:
        check_range(f'{where}.nms_pre', nms_pre, '[1, inf)', integer=True)


__all__ = ['POST_PROCESSING', 'check_range', 'check_post_processing']

"""Accuracy versus FLOPs or parameters, from evaluation runs (the paper's trade-off plot).

Each run is a work directory of ``tools/test.py`` (or ``tools/train.py`` with
validation): its metrics file and the config mmengine dumped there. A divided
model gives one point for the ensemble at its total cost and one per member at
the member's cost; an undivided model gives one point.
"""
from __future__ import annotations

import glob
import io
import os.path as osp
from dataclasses import dataclass

from divdet.utils.errors import ConfigError, MissingFileError

AXES = {'params': ('parameters (M)', 'params', 1e6), 'flops': ('GFLOPs', 'flops', 1e9)}


@dataclass
class Point:
    run: str
    name: str  # 'ensemble', 'model' or 'member i'
    cost: float  # in the axis unit (M params or GFLOPs)
    value: float


def member_key(metric: str, i: int) -> str:
    """``'coco/bbox_mAP'`` -> ``'coco/member{i}_bbox_mAP'`` (the divdet metrics' naming)."""
    head, _, tail = metric.rpartition('/')
    return f'{head}/member{i}_{tail}' if head else f'member{i}_{tail}'


def run_config(work_dir: str) -> str:
    """The config mmengine dumped in ``work_dir`` (exactly one ``*.py``)."""
    found = sorted(glob.glob(osp.join(work_dir, '*.py')))
    if len(found) != 1:
        raise MissingFileError(f'expected one config (*.py, dumped by mmengine) in {work_dir}, '
                               f'found {len(found)}: {found}')
    return found[0]


def run_points(work_dir: str, label: str, metric: str, x: str,
               shape: tuple[int, int] | None = None) -> list[Point]:
    """The points of one run: the ensemble (or model), then each member.

    Raises:
        MissingFileError: no metrics file or config in ``work_dir``.
        ConfigError: ``metric`` is not among the run's metrics, or ``x`` unknown.
    """
    from mmengine.config import Config

    from divdet.apis.complexity import config_complexity
    from divdet.apis.demo import latest_metrics

    if x not in AXES:
        raise ConfigError(f'x must be one of {sorted(AXES)}, found {x!r}')
    metrics = latest_metrics(work_dir)
    if metric not in metrics:
        raise ConfigError(f'{work_dir}: no metric {metric!r}; the run has '
                          f'{sorted(k for k in metrics if "/" in k)}')
    config = run_config(work_dir)
    cost = config_complexity(Config.fromfile(config), config, shape)
    _, key, unit = AXES[x]
    members = cost['members'] if len(cost['members']) > 1 else []
    points = [Point(label, 'ensemble' if members else 'model', cost['total'][key] / unit,
                    metrics[metric])]
    for i, member in enumerate(members):
        if member_key(metric, i) in metrics:
            member_cost = (member[key] + cost['shared'][key] / len(members)) / unit
            points.append(Point(label, f'member {i}', member_cost, metrics[member_key(metric, i)]))
    return points


def plot_points(points: list[Point], metric: str, x: str, title: str = '') -> bytes:
    """A PNG (bytes) of the points: large dots for ensembles/models, crosses for members."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    runs = list(dict.fromkeys(p.run for p in points))
    for color, run in zip(plt.rcParams['axes.prop_cycle'].by_key()['color'] * 4, runs):
        mine = [p for p in points if p.run == run]
        main = [p for p in mine if not p.name.startswith('member')]
        members = [p for p in mine if p.name.startswith('member')]
        ax.scatter([p.cost for p in main], [p.value for p in main], s=70, color=color,
                   label=f'{run} ({main[0].name})', zorder=3)
        if members:
            ax.scatter([p.cost for p in members], [p.value for p in members], s=45, marker='x',
                       color=color, label=f'{run} (members)', zorder=3)
        for p in mine:
            ax.annotate(f'{p.value:.3g}', (p.cost, p.value), textcoords='offset points',
                        xytext=(5, 4), fontsize=8)
    ax.set_xlabel(AXES[x][0])
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='best')
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    plt.close(fig)
    return buf.getvalue()

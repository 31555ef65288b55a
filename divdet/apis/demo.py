"""Helpers shared by the demo scripts in ``tools/demo``."""
from __future__ import annotations

import glob
import json
import os.path as osp
import subprocess
import sys

from divdet.utils.errors import MissingFileError


def run_tool(root: str, *cmd: str) -> None:
    """Run ``python CMD`` in ``root`` as a user would; exit with a message if it fails."""
    print(f'\n$ python {" ".join(cmd)}', flush=True)
    proc = subprocess.run([sys.executable, *cmd], cwd=root)
    if proc.returncode != 0:
        sys.exit(f'demo: `python {" ".join(cmd)}` failed with exit code {proc.returncode}')


def latest_metrics(work_dir: str) -> dict:
    """The metrics that ``tools/test.py``'s logger wrote last under ``work_dir``."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)
    if not files:
        raise MissingFileError(f'no metrics file under {work_dir}/*/ (tools/test.py writes '
                               'WORK_DIR/TIMESTAMP/TIMESTAMP.json)')
    with open(files[-1]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def member_rows(metrics: dict, prefix: str, keys: dict[str, str]) -> list[tuple[str, dict]]:
    """Rows (name, {header: value}) for the ensemble and every member.

    Args:
        metrics: evaluation results, e.g. ``{'coco/bbox_mAP': ..., 'coco/member0_bbox_mAP': ...}``.
        prefix: metric prefix, e.g. ``'coco/'`` or ``'accuracy/'``.
        keys: metric key -> column header, e.g. ``{'bbox_mAP': 'AP'}``.
    """
    first = next(iter(keys))
    rows = [('ensemble', '')]
    i = 0
    while f'{prefix}member{i}_{first}' in metrics:
        rows.append((f'member {i}', f'member{i}_'))
        i += 1
    if len(rows) == 1:
        rows = [('model', '')]
    return [(name, {h: metrics[f'{prefix}{p}{k}'] for k, h in keys.items()}) for name, p in rows]


def print_rows(rows: list[tuple[str, dict]], fmt: str = '{:>8.3f}') -> None:
    """Print member/ensemble rows as an aligned table."""
    headers = list(rows[0][1])
    print(f"{'model':<10}" + ''.join(f'{h:>8}' for h in headers))
    for name, values in rows:
        print(f'{name:<10}' + ''.join(fmt.format(values[h]) for h in headers))


def write_json(path: str, obj) -> None:
    """Write JSON atomically (temporary file, fsync, then rename)."""
    from divdet.utils.files import write_output
    write_output(json.dumps(obj, indent=2).encode(), path, 'the result file')

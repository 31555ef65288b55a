"""``tools/test.py --out``: the raw predictions, written after the metrics.

mmengine's ``DumpResults`` writes its pickle inside the evaluation, before the
metrics are logged: a full disk then loses the metrics of a whole test run.
The collecting metrics here keep the results (on the main process, after the
ranks' results are gathered) and :func:`write_collected` writes them once the
metrics are out. Detection samples carry the dataset's ``classes`` (one shared
tuple, pickled once), so that ``fuse_results.py`` maps labels to categories by
name whatever the annotation file's order.
"""
from __future__ import annotations

import pickle

from mmengine.evaluator import BaseMetric, DumpResults

from divdet.utils.files import write_output


class _Collecting:
    """Keeps the gathered results instead of dumping them in ``compute_metrics``."""

    collected = None

    def compute_metrics(self, results: list) -> dict:
        classes = (self.dataset_meta or {}).get('classes')
        if classes is not None and self.with_classes:
            classes = tuple(classes)
            for sample in results:
                if isinstance(sample, dict):
                    sample['classes'] = classes
        self.collected = results
        return {}


def collecting_dump_metric(scope: str, out: str) -> BaseMetric:
    """The dump metric of ``scope`` (``mmdet``'s strips ground truth, encodes masks)."""
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        base, with_classes = DumpDetResults, True
    else:
        base, with_classes = DumpResults, False
    cls = type(f'Collecting{base.__name__}', (_Collecting, base), dict(with_classes=with_classes))
    return cls(out_file_path=out)


def write_collected(metric: BaseMetric, out: str) -> None:
    """Write the collected predictions to ``out`` (atomically; one-line errors).

    Does nothing on processes other than the main one (they collect nothing).
    """
    if metric.collected is None:
        return
    write_output(pickle.dumps(metric.collected, protocol=4), out, '--out')


__all__ = ['collecting_dump_metric', 'write_collected']

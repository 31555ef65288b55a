"""DividedAccuracy: top-k accuracy of the ensemble and of every member, in one run."""
from __future__ import annotations

from typing import Sequence

from mmengine.logging import MMLogger
from mmpretrain.evaluation import Accuracy
from terminaltables import AsciiTable

from divdet.registry import register_metric

#: Per-sample score fields besides the ensemble's ``pred_score``.
EXTRA_SCORES = ('member_pred_scores', 'first_k_pred_scores')


@register_metric
class DividedAccuracy(Accuracy):
    """mmpretrain's ``Accuracy`` for the ensemble and for each member.

    The ensemble (``pred_score``) is reported under the usual keys
    (``accuracy/top1``, ``accuracy/top5``); member ``i``'s scores
    (``member_pred_scores[i]``, set by
    :class:`~divdet.models.DividedClsHead`) as ``accuracy/member{i}_top1`` and
    so on; for S > 2 the ensemble of the first k members (1 < k < S) as
    ``accuracy/ens{k}_top1``. A table with one row per model is logged.

    Args:
        **kwargs: the arguments of mmpretrain's ``Accuracy`` (``topk``, ...).
    """

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Collect ensemble and member scores with the label."""
        start = len(self.results)
        super().process(data_batch, data_samples)
        for k, sample in enumerate(data_samples):
            for key in EXTRA_SCORES:
                if key in sample:
                    self.results[start + k][key] = sample[key].cpu()

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Accuracy of the ensemble, then of each member; log one table."""
        metrics = super().compute_metrics(
            [{k: v for k, v in r.items() if k not in EXTRA_SCORES} for r in results])
        rows = [('ensemble' if 'member_pred_scores' in results[0] else 'model', dict(metrics))]
        others = []  # (table row, key prefix, field, index)
        for field, name, key, first in (('member_pred_scores', 'member {}', 'member{}_', 0),
                                        ('first_k_pred_scores', 'first {} members', 'ens{}_', 2)):
            count = len(results[0][field]) if field in results[0] else 0
            others += [(name.format(i + first), key.format(i + first), field, i)
                       for i in range(count)]
        for name, key, field, i in others:
            result = super().compute_metrics(
                [dict(gt_label=r['gt_label'], pred_score=r[field][i]) for r in results])
            rows.append((name, result))
            metrics.update((f'{key}{k}', v) for k, v in result.items())
        keys = list(rows[0][1])
        table = AsciiTable([['model'] + keys] +
                           [[name] + [f'{m[k]:.2f}' for k in keys] for name, m in rows],
                           title='Accuracy (%)')
        MMLogger.get_current_instance().info('\n' + table.table)
        return metrics

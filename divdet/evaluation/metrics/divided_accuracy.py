"""DividedAccuracy: top-k accuracy of the ensemble and of every member, in one run."""
from __future__ import annotations

from typing import Sequence

from mmengine.logging import MMLogger
from mmpretrain.evaluation import Accuracy
from terminaltables import AsciiTable

from divdet.registry import register_metric


@register_metric
class DividedAccuracy(Accuracy):
    """mmpretrain's ``Accuracy`` for the ensemble and for each member.

    The ensemble (``pred_score``) is reported under the usual keys
    (``accuracy/top1``, ``accuracy/top5``); member ``i``'s scores
    (``member_pred_scores[i]``, set by
    :class:`~divdet.models.DividedClsHead`) as ``accuracy/member{i}_top1`` and
    so on. A table with one row per model is logged.

    Args:
        **kwargs: the arguments of mmpretrain's ``Accuracy`` (``topk``, ...).
    """

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Collect ensemble and member scores with the label."""
        start = len(self.results)
        super().process(data_batch, data_samples)
        for k, sample in enumerate(data_samples):
            if 'member_pred_scores' in sample:
                self.results[start + k]['member_pred_scores'] = sample['member_pred_scores'].cpu()

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Accuracy of the ensemble, then of each member; log one table."""
        metrics = super().compute_metrics(
            [{k: v for k, v in r.items() if k != 'member_pred_scores'} for r in results])
        rows = [('ensemble' if 'member_pred_scores' in results[0] else 'model', dict(metrics))]
        num_members = len(results[0]['member_pred_scores']) if 'member_pred_scores' in \
            results[0] else 0
        for i in range(num_members):
            member = super().compute_metrics(
                [dict(gt_label=r['gt_label'], pred_score=r['member_pred_scores'][i])
                 for r in results])
            rows.append((f'member {i}', member))
            metrics.update((f'member{i}_{k}', v) for k, v in member.items())
        keys = list(rows[0][1])
        table = AsciiTable([['model'] + keys] +
                           [[name] + [f'{m[k]:.2f}' for k in keys] for name, m in rows],
                           title='Accuracy (%)')
        MMLogger.get_current_instance().info('\n' + table.table)
        return metrics

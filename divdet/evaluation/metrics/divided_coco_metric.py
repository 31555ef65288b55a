"""DividedCocoMetric: COCO box AP of the ensemble and of every member, in one run."""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

from mmdet.evaluation import CocoMetric
from mmengine.fileio import get_local_path
from mmengine.logging import MMLogger
from terminaltables import AsciiTable

from divdet.datasets.coco import CheckedCOCO
from divdet.models.test_time_augs.divided_det_tta import MERGED_KEY
from divdet.registry import register_metric

#: Columns of the summary table: (metric key suffix, header).
TABLE_COLUMNS = (('mAP', 'AP'), ('mAP_50', 'AP50'), ('mAP_75', 'AP75'), ('mAP_s', 'APs'),
                 ('mAP_m', 'APm'), ('mAP_l', 'APl'))


def _to_result(img_id: int, pred) -> dict:
    return dict(img_id=img_id, bboxes=pred['bboxes'].cpu().numpy(),
                scores=pred['scores'].cpu().numpy(), labels=pred['labels'].cpu().numpy())


@register_metric
class DividedCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` for the fused detections and for each member.

    The fused (ensemble) results are reported under the usual keys
    (``bbox_mAP``, ``bbox_mAP_50``, ...), so checkpoint selection and logs work
    as with any mmdet model; member ``i`` is reported as ``member{i}_bbox_mAP``
    and so on; for S > 2 the fusion of the first k members (1 < k < S) as
    ``ens{k}_bbox_mAP`` and so on, so one run gives accuracy against the number
    of members. A table with one row per model is logged at the end.

    Members' detections come from ``member_pred_instances`` in each data
    sample (set by :class:`~divdet.models.DividedSingleStageDetector`); for
    an undivided model only the ensemble row is shown.

    The annotation file is read with :class:`~divdet.datasets.CheckedCOCO`, so
    a missing or malformed file is an ``AnnotationError`` naming it.

    Args:
        ann_file: the COCO annotation file of the evaluated split.
        **kwargs: the other arguments of mmdet's ``CocoMetric``. With
            ``outfile_prefix``, member ``i``'s files get ``.member{i}`` added.
    """

    def __init__(self, ann_file: Optional[str] = None, **kwargs) -> None:
        if kwargs.get('sort_categories', False):
            super().__init__(ann_file=ann_file, **kwargs)
            return
        super().__init__(ann_file=None, **kwargs)
        if ann_file is not None:
            with get_local_path(ann_file, backend_args=self.backend_args) as local_path:
                self._coco_api = CheckedCOCO(local_path)

    _warned_tta = False

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Collect ground truth, fused and per-member predictions."""
        start = len(self.results)
        super().process(data_batch, data_samples)
        for k, sample in enumerate(data_samples):
            if sample.get('flip') and not sample.get(MERGED_KEY) and \
                    'member_pred_instances' in sample:
                # a test-time-augmented run through mmdet's DetTTAModel: the members'
                # detections are of one flipped view, not merged; their AP would be wrong
                if not self._warned_tta:
                    MMLogger.get_current_instance().warning(
                        'the members\' detections come from one flipped test-time view, not '
                        'merged (mmdet\'s DetTTAModel); their rows are left out. Set '
                        "tta_model = dict(type='DividedDetTTAModel', ...) to merge them")
                    self._warned_tta = True
                sample = {k2: v for k2, v in sample.items()
                          if k2 not in ('member_pred_instances', 'first_k_pred_instances',
                                        'member_indices')}
            members = tuple(_to_result(sample['img_id'], m)
                            for m in sample.get('member_pred_instances', ()))
            first_k = tuple(_to_result(sample['img_id'], m)
                            for m in sample.get('first_k_pred_instances', ()))
            ids = tuple(sample.get('member_indices', range(len(members))))
            self.results[start + k] = self.results[start + k] + (members, first_k, ids)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Evaluate the ensemble, then each member, and log one table."""
        logger = MMLogger.get_current_instance()
        num_members = len(results[0][2]) if results else 0
        num_first_k = len(results[0][3]) if results else 0
        logger.info('Evaluating the ensemble...' if num_members else 'Evaluating...')
        metrics = OrderedDict(self._evaluate([(r[0], r[1]) for r in results], 'the ensemble'
                                             if num_members else 'the model'))
        rows = [('ensemble' if num_members else 'model', dict(metrics))]
        prefix = self.outfile_prefix
        # (table row, key prefix, the results of that model per image)
        ids = results[0][4] if results else ()  # members run (all, or test_cfg.members)
        others = [(f'member {m}', f'member{m}_', lambda r, i=i: r[2][i])
                  for i, m in enumerate(ids)]
        others += [(f'first {j + 2} members', f'ens{j + 2}_', lambda r, j=j: r[3][j])
                   for j in range(num_first_k)]
        try:
            for name, key, pick in others:
                logger.info(f'Evaluating {name}...')
                if prefix is not None:
                    self.outfile_prefix = f'{prefix}.{key[:-1]}'
                result = self._evaluate([(r[0], pick(r)) for r in results], name)
                rows.append((name, result))
                metrics.update((f'{key}{k}', v) for k, v in result.items())
        finally:
            self.outfile_prefix = prefix
        logger.info('\n' + self.summary_table(rows))
        return metrics

    #: the metrics a box evaluation reports
    BOX_KEYS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m',
                'bbox_mAP_l')

    def _evaluate(self, pairs: list, name: str) -> dict[str, float]:
        """mmdet's evaluation of one model's (ground truth, prediction) pairs.

        A model without a single detection in the whole test set has AP 0; mmdet
        logs an error and reports no metric at all, so a test run would end with
        exit status 0 and no numbers. It is reported as 0.0, with a warning.
        """
        if (pairs and not self.format_only and self.metrics == ['bbox']
                and all(len(pred['bboxes']) == 0 for _, pred in pairs)):
            MMLogger.get_current_instance().warning(
                f'{name}: no detection in any of the {len(pairs)} images (every score below '
                'test_cfg.score_thr?): box AP 0.0')
            return {key: 0.0 for key in self.BOX_KEYS}
        return super().compute_metrics(pairs)

    @staticmethod
    def summary_table(rows: Sequence[tuple[str, dict]]) -> str:
        """One row per model, COCO box AP columns in percent."""
        header = ['model'] + [h for _, h in TABLE_COLUMNS]
        def cell(value: float) -> str:  # pycocotools gives -1 when an area range is empty
            return 'n/a' if value < 0 else f'{100 * value:.1f}'

        body = [[name] + [cell(m.get(f'bbox_{key}', -1.0)) for key, _ in TABLE_COLUMNS]
                for name, m in rows]
        return AsciiTable([header] + body, title='COCO box AP (%)').table

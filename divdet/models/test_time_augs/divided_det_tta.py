"""mmdet's ``DetTTAModel`` for divided detectors: every member's views merged too.

mmdet's ``tools/test.py --tta`` wraps the detector in the config's ``tta_model``
and runs each image through ``tta_pipeline`` (e.g. the image and its flip).
``DetTTAModel`` merges the views of ``pred_instances`` (the ensemble): boxes of
flipped views flipped back, then NMS. It does not know
``member_pred_instances``, so every member would be reported from the first
view alone (flipped: an AP near 0). :class:`DividedDetTTAModel` merges each
member's views (and each "first k members" fusion's) exactly as the ensemble's,
and marks the sample, so :class:`~divdet.evaluation.DividedCocoMetric` can tell
merged member rows from unmerged ones (which it drops, with a warning).
"""
from __future__ import annotations

from mmdet.models.test_time_augs import DetTTAModel
from mmdet.structures import DetDataSample

from divdet.registry import register_model

#: the per-member prediction lists a divided detector adds to each data sample
MEMBER_FIELDS = ('member_pred_instances', 'first_k_pred_instances')

#: metainfo key set on samples whose member predictions were merged over the views
MERGED_KEY = 'tta_members_merged'


@register_model
class DividedDetTTAModel(DetTTAModel):
    """``DetTTAModel`` that merges the members' views as the ensemble's.

    Args:
        tta_cfg: as mmdet's (``nms``, ``max_per_img``), used for the ensemble and
            every member alike.
        **kwargs: as mmdet's ``DetTTAModel`` (``module``: the divided detector).
    """

    def _merge_single_sample(self, data_samples: list[DetDataSample]) -> DetDataSample:
        merged = {}
        for field in MEMBER_FIELDS:
            if field not in data_samples[0]:
                continue
            per_view = [sample.get(field) for sample in data_samples]
            merged[field] = [
                super(DividedDetTTAModel, self)._merge_single_sample(
                    [DetDataSample(metainfo=sample.metainfo, pred_instances=views[i])
                     for sample, views in zip(data_samples, per_view)]).pred_instances
                for i in range(len(per_view[0]))]
        result = super()._merge_single_sample(data_samples)
        for field, value in merged.items():
            result.set_field(value, field)
        result.set_metainfo({MERGED_KEY: True})
        return result


__all__ = ['DividedDetTTAModel', 'MEMBER_FIELDS', 'MERGED_KEY']

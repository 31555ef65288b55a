"""Fusion: merging the detections of several models (members) per image.

:mod:`~divdet.fusion.fusers` holds the registered fusers (``TASK_UTILS``:
``WeightedBoxesFusion``, ``NMSFusion``, ``SoftNMSFusion``, ``ConcatFusion``) and
their contract; :mod:`~divdet.fusion.wbf` the Weighted Boxes Fusion they use,
the torch operator ``divdet::weighted_boxes_fusion`` (C++ kernel in ``csrc/``).
"""
from .fusers import (
    HOST_WBF_MAX_IMAGES,
    LEGACY_TYPES,
    BaseFuser,
    ConcatFusion,
    NMSFusion,
    SoftNMSFusion,
    WeightedBoxesFusion,
    build_fuser,
)
from .wbf import batched_weighted_boxes_fusion, check_fusion_input, weighted_boxes_fusion

__all__ = [
    'BaseFuser', 'ConcatFusion', 'HOST_WBF_MAX_IMAGES', 'LEGACY_TYPES', 'NMSFusion',
    'SoftNMSFusion', 'WeightedBoxesFusion', 'batched_weighted_boxes_fusion', 'build_fuser',
    'check_fusion_input', 'weighted_boxes_fusion'
]

"""Per-member photometric views for detection.

In classification each member sees its own augmented view
(:class:`~divdet.datasets.transforms.MemberViews`). In detection the members'
predictions are compared anchor by anchor (the co-training loss) and matched
to one set of ground-truth boxes, so the views must share their geometry:
:class:`DetMemberViews` runs the geometric transforms once (they come before
it in the pipeline) and draws the *photometric* transforms after it per
member. :class:`RandomNoiseBlur` adds the noise and blur that mmdet's
``PhotoMetricDistortion`` lacks.

Optionally each member's view is also mirrored horizontally with its own draw
(``flip_prob``). The boxes stay those of the unmirrored image; the SSD head
mirrors that member's anchor maps back (columns reversed, the x offset
negated) before its loss and the co-training loss, so both compare the same
anchors (:func:`divdet.models.dense_heads.divided_ssd_head.mirror_outputs`).
"""
from __future__ import annotations

import copy
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmengine.registry import DefaultScope

from divdet.registry import register_transform
from divdet.utils.errors import ConfigError

#: Meta key of the views an image carries: a tuple with one entry per member,
#: True where that member's view is mirrored. List it in
#: ``PackDetInputs(meta_keys=...)``.
VIEWS_KEY = 'member_views'


@register_transform
class DetMemberViews(BaseTransform):
    """One photometric view of the same (geometrically transformed) image per member.

    Each view runs ``transforms`` on its own copy of ``img`` with its own random
    draws; boxes, labels and image size are shared. The views are stacked along
    the channel axis (``img`` becomes (H, W, S * C)) and ``results['member_views']``
    records the views (one entry per member: whether it is mirrored), so that
    :class:`~divdet.models.CheckedDetDataPreprocessor` turns the batch into
    (N, S, C, H, W), one view per member. Add ``'member_views'``
    to ``PackDetInputs``' ``meta_keys``.

    ``num_views=None`` (the default) takes the model's S from
    :class:`~divdet.engine.hooks.CoTrainingHook`, so S stays written once.

    Args:
        transforms: photometric transforms drawn per member, e.g.
            ``[dict(type='PhotoMetricDistortion'), dict(type='RandomNoiseBlur')]``.
        num_views: number of views; None to take the model's S.
        per_member: False applies ``transforms`` once and leaves one image that
            every member shares (an ordinary pipeline), so that a config can
            switch views on and off with one key
            (``--cfg-options train_dataloader.dataset.pipeline.4.per_member=True``).
        flip_prob: probability that a member's view is mirrored horizontally,
            drawn per member after ``transforms`` (with ``per_member`` only).
            The model's head mirrors that member's outputs back; this is exact
            when the anchors of each feature map are mirror-symmetric about the
            image centre (the SSD head checks it and refuses otherwise).

    Raises:
        ConfigError: (when applied) a transform changed the image size or the
            boxes: geometric transforms belong before ``DetMemberViews``.
    """

    def __init__(self, transforms: list, num_views: Optional[int] = None,
                 per_member: bool = True, flip_prob: float = 0.0) -> None:
        with DefaultScope.overwrite_default_scope('mmdet'):
            self.pipeline = Compose(transforms)
        self.per_member = per_member
        if isinstance(flip_prob, bool) or not isinstance(flip_prob, (int, float)) \
                or not 0 <= flip_prob <= 1:
            raise ConfigError(f'flip_prob must be a probability in [0, 1], found {flip_prob!r}')
        self.flip_prob = float(flip_prob)
        self.num_views = None
        if num_views is not None:
            self.set_num_views(num_views)

    def set_num_views(self, num_views: int) -> None:
        """Produce ``num_views`` views from now on."""
        if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1:
            raise ConfigError(f'num_views must be a positive integer, found {num_views!r}')
        self.num_views = num_views

    def transform(self, results: dict) -> dict:
        """Stack one photometric view per member along the channel axis."""
        if not self.per_member:
            return self.pipeline(results)
        if self.num_views is None:
            raise RuntimeError('DetMemberViews has no view count: add CoTrainingHook to '
                               'custom_hooks (it sets one view per member) or give num_views')
        image = results['img']
        boxes = results.get('gt_bboxes')
        views, mirrored = [], []
        for _ in range(self.num_views):
            # deep copies: a geometric transform would change boxes in place
            view = {k: copy.deepcopy(v) for k, v in results.items() if k != 'img'}
            view['img'] = image.copy()
            view = self.pipeline(view)
            if view is None or view['img'].shape[:2] != image.shape[:2] or (
                    boxes is not None and not _same_boxes(view.get('gt_bboxes'), boxes)):
                raise ConfigError('DetMemberViews: a per-member transform changed the image '
                                  'size or the boxes; members must share the geometry (put '
                                  'resizing, flipping and cropping before DetMemberViews)')
            img = view['img'].astype(np.float32)
            flip = self.flip_prob > 0 and bool(np.random.rand() < self.flip_prob)
            views.append(np.ascontiguousarray(img[:, ::-1]) if flip else img)
            mirrored.append(flip)
        results['img'] = np.concatenate(views, axis=2)
        results[VIEWS_KEY] = tuple(mirrored)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_views={self.num_views}, '
                f'per_member={self.per_member}, flip_prob={self.flip_prob}, {self.pipeline})')


def _same_boxes(a, b) -> bool:
    if a is None:
        return False
    return a.tensor.shape == b.tensor.shape and bool((a.tensor == b.tensor).all())


@register_transform
class RandomNoiseBlur(BaseTransform):
    """Gaussian pixel noise and Gaussian blur, each with a probability.

    Args:
        noise_prob: probability of adding noise.
        noise_std: (low, high) range of the noise's standard deviation, in
            grey levels.
        blur_prob: probability of blurring.
        blur_sigma: (low, high) range of the blur's sigma, in pixels.
    """

    def __init__(self, noise_prob: float = 0.5, noise_std: tuple = (2.0, 10.0),
                 blur_prob: float = 0.3, blur_sigma: tuple = (0.3, 1.2)) -> None:
        self.noise_prob, self.noise_std = noise_prob, tuple(noise_std)
        self.blur_prob, self.blur_sigma = blur_prob, tuple(blur_sigma)

    def transform(self, results: dict) -> dict:
        img = results['img'].astype(np.float32)
        if np.random.rand() < self.blur_prob:
            img = cv2.GaussianBlur(img, (0, 0), float(np.random.uniform(*self.blur_sigma)))
        if np.random.rand() < self.noise_prob:
            img = img + np.random.normal(0, np.random.uniform(*self.noise_std),
                                         img.shape).astype(np.float32)
        results['img'] = img
        return results

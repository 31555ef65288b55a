"""MemberViews: members get different augmented views of the same image, same label."""
import numpy as np
import pytest
from mmpretrain.datasets.transforms import PackInputs
from mmpretrain.registry import TRANSFORMS

from divdet.datasets.transforms import MemberViews
from divdet.engine.hooks.cotraining_hook import set_member_views

PIPELINE = [dict(type='RandomCrop', crop_size=24, padding=4),
            dict(type='RandomFlip', prob=0.5, direction='horizontal')]


def _results():
    rng = np.random.default_rng(0)
    return dict(img=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), gt_label=3)


def test_views_differ_labels_agree():
    views = MemberViews(PIPELINE, num_views=3)
    packed = PackInputs()(views(_results()))
    imgs = packed['inputs']
    assert len(imgs) == 3 and all(i.shape == (3, 24, 24) for i in imgs)
    assert not all((imgs[0] == i).all() for i in imgs[1:])
    assert packed['data_samples'].gt_label.item() == 3


def test_view_count_comes_from_the_model():
    views = TRANSFORMS.build(dict(type='MemberViews', transforms=PIPELINE))
    with pytest.raises(RuntimeError, match='CoTrainingHook'):
        views(_results())

    class FakeDataset:
        pipeline = type('Compose', (), {'transforms': [views]})()

    assert set_member_views(FakeDataset(), 4) == 1
    assert len(views(_results())['img']) == 4

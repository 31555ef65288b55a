"""Per-member views are normalised view by view; Mixup/CutMix are shared across them."""
import pytest
import torch
from mmpretrain.structures import DataSample

from divdet.models import DividedClsDataPreprocessor


@pytest.mark.parametrize('augment', [dict(type='Mixup', alpha=1.0), dict(type='CutMix', alpha=1.0)])
def test_batch_augments_shared_across_views(augment):
    pre = DividedClsDataPreprocessor(num_classes=4, mean=[10, 20, 30], std=[2, 2, 2],
                                     to_rgb=True, batch_augments=dict(augments=augment))
    torch.manual_seed(0)
    img = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i % 4) for i in range(6)]
    out = pre(dict(inputs=[img, img.clone()], data_samples=samples), training=True)
    x = out['inputs']
    assert x.shape == (6, 2, 3, 8, 8)
    # Identical views stay identical: the same partner and ratio (and box) for both.
    torch.testing.assert_close(x[:, 0], x[:, 1])
    assert out['data_samples'][0].gt_score.shape == (4, )


def test_normalisation_matches_single_view_path():
    pre = DividedClsDataPreprocessor(num_classes=4, mean=[10, 20, 30], std=[2, 3, 4], to_rgb=True)
    a = torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8)
    b = torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8)
    multi = pre(dict(inputs=[a, b]))['inputs']
    torch.testing.assert_close(multi[:, 0], pre(dict(inputs=a))['inputs'])
    torch.testing.assert_close(multi[:, 1], pre(dict(inputs=b))['inputs'])


@pytest.mark.parametrize('collate', ['pseudo_collate', 'default_collate'])
def test_views_from_a_real_pipeline_and_collate(collate):
    import numpy as np
    from mmengine.dataset import default_collate, pseudo_collate
    from mmpretrain.datasets.transforms import PackInputs

    from divdet.datasets.transforms import MemberViews
    views = MemberViews([dict(type='RandomCrop', crop_size=12, padding=2)], num_views=2)
    rng = np.random.default_rng(0)
    samples = [PackInputs()(views(dict(img=rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                                       gt_label=i))) for i in range(3)]
    batch = {'pseudo_collate': pseudo_collate, 'default_collate': default_collate}[collate](samples)
    pre = DividedClsDataPreprocessor(num_classes=4, mean=[0, 0, 0], std=[1, 1, 1])
    x = pre(batch, training=True)['inputs']
    assert x.shape == (3, 2, 3, 12, 12)
    expected = torch.stack([s['inputs'][1] for s in samples]).float()
    torch.testing.assert_close(x[:, 1], expected)

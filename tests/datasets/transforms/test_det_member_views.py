"""DetMemberViews: each member its own photometric view of one geometric sample; the
data preprocessor batches the views as (N, S, C, H, W) for the divided backbone."""
import copy

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS, TRANSFORMS

from divdet.datasets.transforms import DetMemberViews
from divdet.utils import ConfigError, ImageError
from tests.conftest import scoped
from tests.models.ssd_factory import detector_cfg

_scope = scoped('mmdet')
PHOTO = [dict(type='PhotoMetricDistortion'), dict(type='RandomNoiseBlur', noise_prob=1.0)]
META = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'member_views')


def _pipeline(views, **kwargs):
    from mmcv.transforms import Compose
    return Compose([dict(type='Resize', scale=(64, 64), keep_ratio=False),
                    dict(type='DetMemberViews', transforms=views, **kwargs),
                    dict(type='PackDetInputs', meta_keys=META)])


def _results(seed=0):
    from mmdet.structures.bbox import HorizontalBoxes
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (48, 56, 3)).astype(np.uint8)
    return dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], img_id=seed,
                img_path=f'{seed}.jpg',
                gt_bboxes=HorizontalBoxes(torch.tensor([[4., 6., 30., 40.], [10., 2., 50., 20.]])),
                gt_bboxes_labels=np.array([0, 2]), gt_ignore_flags=np.array([False, False]))


def test_members_get_different_pixels_and_the_same_boxes():
    np.random.seed(0)
    packed = _pipeline(PHOTO, num_views=3)(_results())
    assert packed['inputs'].shape == (9, 64, 64)
    views = packed['inputs'].unflatten(0, (3, 3))
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])
    sample = packed['data_samples']
    assert sample.metainfo['member_views'] == (False, False, False)
    plain = _pipeline([], num_views=1, per_member=False)(_results())['data_samples']
    torch.testing.assert_close(sample.gt_instances.bboxes.tensor,
                               plain.gt_instances.bboxes.tensor)


def test_shared_mode_is_an_ordinary_pipeline():
    np.random.seed(1)
    shared = _pipeline(PHOTO, per_member=False)(_results())
    np.random.seed(1)
    from mmcv.transforms import Compose
    stock = Compose([dict(type='Resize', scale=(64, 64), keep_ratio=False), *PHOTO,
                     dict(type='PackDetInputs', meta_keys=META)])(_results())
    torch.testing.assert_close(shared['inputs'], stock['inputs'])
    assert 'member_views' not in shared['data_samples'].metainfo


def test_geometric_transform_in_the_views_is_refused():
    views = _pipeline([dict(type='RandomFlip', prob=1.0)], num_views=2)
    with pytest.raises(ConfigError, match='members must share the geometry'):
        views(_results())


def test_without_a_view_count_says_how_to_get_one():
    with pytest.raises(RuntimeError, match='add CoTrainingHook'):
        TRANSFORMS.build(dict(type='DetMemberViews', transforms=PHOTO))(_results())


def test_cotraining_hook_sets_the_count():
    from divdet.engine.hooks.cotraining_hook import set_member_views
    views = DetMemberViews(PHOTO)

    class Dataset:
        pipeline = [views]

    assert set_member_views(Dataset(), 4) == 1 and views.num_views == 4


def _batch(views, seed=0):
    samples = [_pipeline(views, num_views=2)(_results(seed + k)) for k in range(2)]
    return dict(inputs=[s['inputs'] for s in samples],
                data_samples=[s['data_samples'] for s in samples])


def test_preprocessor_normalises_each_view_and_stacks_members():
    pre = MODELS.build(dict(type='CheckedDetDataPreprocessor', mean=[10., 20., 30.],
                            std=[2., 4., 8.], bgr_to_rgb=True))
    np.random.seed(0)
    batch = _batch(PHOTO)
    raw = [x.clone() for x in batch['inputs']]
    out = pre(batch, training=True)
    assert out['inputs'].shape == (2, 2, 3, 64, 64)
    for n in range(2):
        for v in range(2):
            view = raw[n].unflatten(0, (2, 3))[v].float().flip(0)  # BGR -> RGB
            expected = (view - torch.tensor([10., 20., 30.]).view(3, 1, 1)) / \
                torch.tensor([2., 4., 8.]).view(3, 1, 1)
            torch.testing.assert_close(out['inputs'][n, v], expected)


def test_identical_views_give_the_shared_input_loss():
    """Views drawn with no photometric transform: the loss is today's (shared image)."""
    torch.manual_seed(0)
    model = MODELS.build(detector_cfg(num_members=2))
    model.init_weights()
    model.train()
    views = model.data_preprocessor(_batch([]), training=True)
    assert views['inputs'].shape == (2, 2, 3, 64, 64)
    shared = copy.deepcopy(views)
    shared['inputs'] = views['inputs'][:, 0]
    torch.testing.assert_close(views['inputs'][:, 1], shared['inputs'])
    loss_views = model.loss(views['inputs'], views['data_samples'])
    loss_shared = model.loss(shared['inputs'], shared['data_samples'])
    assert loss_views.keys() == loss_shared.keys() and 'loss_cot' in loss_views
    for key in loss_views:
        torch.testing.assert_close(sum(loss_views[key]) if isinstance(loss_views[key], list)
                                   else loss_views[key],
                                   sum(loss_shared[key]) if isinstance(loss_shared[key], list)
                                   else loss_shared[key])


def test_views_reach_each_member():
    """Member i's features are computed from view i."""
    torch.manual_seed(0)
    model = MODELS.build(detector_cfg(num_members=2))
    model.init_weights()
    np.random.seed(3)
    data = model.data_preprocessor(_batch(PHOTO), training=True)
    feats = model.backbone(data['inputs'])
    for i in range(2):
        # float32 within 1e-4: the strided view x[:, i] may take another conv kernel
        torch.testing.assert_close(feats[i][0], model.backbone.members[i](data['inputs'][:, i])[0],
                                   rtol=1e-4, atol=1e-4)
    assert not torch.equal(data['inputs'][:, 0], data['inputs'][:, 1])


def test_wrong_channels_with_views_is_an_image_error():
    pre = MODELS.build(dict(type='CheckedDetDataPreprocessor', mean=[0., 0., 0.], std=[1., 1., 1.]))
    batch = _batch([])
    batch['inputs'][1] = batch['inputs'][1][:4]
    with pytest.raises(ImageError,
                       match=r'expected 2 views of 3 channels, found 4 channels in 1\.jpg'):
        pre(batch)


def test_mirrored_views_keep_the_boxes_and_record_the_flips():
    np.random.seed(0)
    mirrored = _pipeline([], num_views=3, flip_prob=1.0)(_results())
    plain = _pipeline([], num_views=3)(_results())
    assert mirrored['data_samples'].metainfo['member_views'] == (True, True, True)
    assert plain['data_samples'].metainfo['member_views'] == (False, False, False)
    torch.testing.assert_close(mirrored['inputs'], plain['inputs'].flip(-1))
    torch.testing.assert_close(mirrored['data_samples'].gt_instances.bboxes.tensor,
                               plain['data_samples'].gt_instances.bboxes.tensor)
    np.random.seed(0)
    some = [_pipeline([], num_views=4, flip_prob=0.5)(_results())['data_samples']
            .metainfo['member_views'] for _ in range(8)]
    assert {f for s in some for f in s} == {True, False}  # drawn per member
    with pytest.raises(ConfigError, match=r'flip_prob must be a probability in \[0, 1\]'):
        DetMemberViews(PHOTO, flip_prob=1.5)


def test_detector_trains_on_mirrored_views():
    torch.manual_seed(0)
    model = MODELS.build(detector_cfg(num_members=2))
    model.init_weights()
    model.train()
    np.random.seed(0)
    samples = [_pipeline(PHOTO, num_views=2, flip_prob=0.5)(_results(k)) for k in range(4)]
    data = model.data_preprocessor(dict(inputs=[s['inputs'] for s in samples],
                                        data_samples=[s['data_samples'] for s in samples]),
                                   training=True)
    flags = [s.metainfo['member_views'] for s in data['data_samples']]
    assert any(any(f) for f in flags) and not all(all(f) for f in flags)
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(sum(v) if isinstance(v, list) else v for v in losses.values())
    assert torch.isfinite(total)
    total.backward()

"""Registered fusers: built from configs, each equal to its reference, one contract."""
import warnings

import numpy as np
import pytest
import torch
from ensemble_boxes import weighted_boxes_fusion as eb_wbf
from mmcv.ops import batched_nms
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData

from divdet.fusion import (
    BaseFuser,
    ConcatFusion,
    NMSFusion,
    SoftNMSFusion,
    WeightedBoxesFusion,
    build_fuser,
)
from divdet.utils.errors import ConfigError, FusionInputError

SHAPE = (100, 200)  # (height, width)


def _member(boxes, scores, labels):
    return InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                        scores=torch.tensor(scores), labels=torch.tensor(labels))


def _pair():
    a = _member([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.4], [0, 1])
    b = _member([[12, 12, 52, 52]], [0.7], [0])
    return a, b


def _random_members(rng, num_models=3, n=40, num_labels=4, height=100, width=200):
    out = []
    for _ in range(num_models):
        xy = rng.uniform(0, 0.7, size=(n, 2)) * [width, height]
        wh = rng.uniform(0.05, 0.3, size=(n, 2)) * [width, height]
        out.append(InstanceData(bboxes=torch.tensor(np.concatenate([xy, xy + wh], 1),
                                                    dtype=torch.float32),
                                scores=torch.tensor(rng.uniform(0.05, 1, n), dtype=torch.float32),
                                labels=torch.tensor(rng.integers(0, num_labels, n))))
    return out


@pytest.mark.parametrize('name', ['WeightedBoxesFusion', 'NMSFusion', 'SoftNMSFusion',
                                  'ConcatFusion'])
def test_registered_in_task_utils_and_built_from_configs(name):
    assert issubclass(TASK_UTILS.get(name), BaseFuser)
    fuser = TASK_UTILS.build(dict(type=name, weights=[1, 2]))
    assert type(fuser).__name__ == name and fuser.weights == [1.0, 2.0]
    assert type(build_fuser(dict(type=name))) is type(fuser)


@pytest.mark.parametrize('legacy,new', [('wbf', WeightedBoxesFusion), ('nms', NMSFusion),
                                        ('concat', ConcatFusion)])
def test_earlier_type_names_still_work_with_a_warning(legacy, new):
    with pytest.warns(FutureWarning, match=f"fusion type '{legacy}' is deprecated; use "
                                           f"type='{new.__name__}'"):
        assert type(build_fuser(dict(type=legacy))) is new


def test_bad_configs_are_clear_errors():
    with pytest.raises(ConfigError, match=r"registered fuser \(.*WeightedBoxesFusion.*\), "
                                          "found 'median'"):
        build_fuser(dict(type='median'))
    with pytest.raises(ConfigError, match="NMSFusion: .*'conf_type'.*_delete_=True"):
        build_fuser(dict(type='NMSFusion', conf_type='avg'))
    with pytest.raises(ConfigError, match="conf_type must be one of .*found 'median'"):
        WeightedBoxesFusion(conf_type='median')
    with pytest.raises(ConfigError, match="device must be 'auto', 'same' or 'cpu'"):
        WeightedBoxesFusion(device='gpu')
    with pytest.raises(ConfigError, match="method must be one of .*found 'hard'"):
        SoftNMSFusion(method='hard')


@pytest.mark.parametrize('weight', [0.0, -1.0, float('nan'), float('inf')])
@pytest.mark.parametrize('fuser', [WeightedBoxesFusion, NMSFusion, SoftNMSFusion, ConcatFusion])
def test_weights_must_be_positive_and_finite(fuser, weight):
    with pytest.raises(FusionInputError, match=r'weight of model \(member\) 1 is'):
        fuser(weights=[1.0, weight])


@pytest.mark.parametrize('fuser', [WeightedBoxesFusion(), NMSFusion(), SoftNMSFusion(),
                                   ConcatFusion()], ids=lambda f: type(f).__name__)
def test_bad_detections_name_the_model_and_image(fuser):
    a, b = _pair()
    bad = b.clone()
    bad.scores = torch.tensor([float('nan')])
    with pytest.raises(FusionInputError, match=r'image 1, model \(member\) 1: 1 scores values'):
        fuser.fuse_batch([[a, b], [a, bad]], [SHAPE, SHAPE])
    with pytest.raises(FusionInputError, match='2 weights for 3 models'):
        type(fuser)(weights=[1, 1]).fuse_batch([[a, b, b]], [SHAPE])
    with pytest.raises(FusionInputError, match='image 1 has results of 1 models, image 0 of 2'):
        fuser.fuse_batch([[a, b], [a]], [SHAPE, SHAPE])


def test_wbf_equals_ensemble_boxes_on_normalised_boxes():
    rng = np.random.default_rng(0)
    members = _random_members(rng)
    weights = [1.0, 2.0, 0.5]
    fuser = WeightedBoxesFusion(weights=weights, iou_thr=0.55, skip_box_thr=0.1,
                                conf_type='box_and_model_avg')
    got = fuser.fuse(members, SHAPE)
    scale = np.array([SHAPE[1], SHAPE[0]] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        boxes, scores, labels = eb_wbf([m.bboxes.numpy() / scale for m in members],
                                       [m.scores.numpy() for m in members],
                                       [m.labels.numpy() for m in members], weights=weights,
                                       iou_thr=0.55, skip_box_thr=0.1,
                                       conf_type='box_and_model_avg')
    assert len(got) == len(boxes) > 10
    order = np.lexsort((labels, -scores))
    got_order = np.lexsort((got.labels.numpy(), -got.scores.numpy()))
    np.testing.assert_allclose(got.bboxes.numpy()[got_order], (boxes * scale)[order],
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got.scores.numpy()[got_order], scores[order], rtol=1e-5)


def test_the_overlapping_boxes_merge_into_their_score_weighted_mean():
    fused = WeightedBoxesFusion(iou_thr=0.5).fuse(list(_pair()), SHAPE)
    assert len(fused) == 2
    torch.testing.assert_close(fused.bboxes[fused.scores.argmax()],
                               torch.tensor([10.875, 10.875, 50.875, 50.875]))


@pytest.mark.parametrize('kind', [NMSFusion, SoftNMSFusion])
def test_nms_fusers_equal_mmcv_on_the_weighted_union(kind):
    rng = np.random.default_rng(1)
    members = _random_members(rng)
    weights = [1.0, 2.0, 0.5]
    fuser = kind(weights=weights)
    got = fuser.fuse(members, SHAPE)
    scores = torch.cat([m.scores * (w / 2.0) for m, w in zip(members, weights)])
    boxes = torch.cat([m.bboxes for m in members])
    labels = torch.cat([m.labels for m in members])
    cfg = (dict(type='nms', iou_threshold=0.5) if kind is NMSFusion else
           dict(type='soft_nms', iou_threshold=0.3, sigma=0.5, min_score=1e-3, method='linear'))
    dets, keep = batched_nms(boxes, scores, labels, cfg)
    assert 0 < len(got) == len(keep)
    if kind is NMSFusion:
        assert len(got) < len(boxes)  # some boxes were suppressed
    order = dets[:, -1].argsort(descending=True, stable=True)
    torch.testing.assert_close(got.scores, dets[order, -1])
    torch.testing.assert_close(got.bboxes, dets[order, :4])
    assert torch.equal(got.labels, labels[keep][order])


def test_concat_keeps_every_box_by_weighted_score():
    a, b = _pair()
    fused = ConcatFusion(weights=[1, 4]).fuse([a, b], SHAPE)
    assert len(fused) == 3
    torch.testing.assert_close(fused.scores, torch.tensor([0.7, 0.9 / 4, 0.4 / 4]))


@pytest.mark.parametrize('fuser', [WeightedBoxesFusion(), NMSFusion(), SoftNMSFusion(),
                                   ConcatFusion()], ids=lambda f: type(f).__name__)
def test_the_contract(fuser):
    """Per image in, an InstanceData out with descending scores; one model passes through;
    a batch fuses image by image; empty results give empty results."""
    rng = np.random.default_rng(2)
    images = [_random_members(rng, num_models=2, n=20) for _ in range(3)]
    batch = fuser.fuse_batch(images, [SHAPE] * 3)
    for image, fused in zip(images, batch):
        single = fuser.fuse(image, SHAPE)
        torch.testing.assert_close(fused.scores, single.scores)
        assert set(fused.keys()) >= {'bboxes', 'scores', 'labels'}
        assert bool((fused.scores[:-1] >= fused.scores[1:]).all())
    only = images[0][:1]
    assert fuser.fuse_batch([only], [SHAPE])[0] is only[0]
    empty = InstanceData(bboxes=torch.zeros((0, 4)), scores=torch.zeros(0),
                         labels=torch.zeros(0, dtype=torch.long))
    assert len(fuser.fuse([empty, empty], SHAPE)) == 0


def test_subset_takes_those_models_weights():
    fuser = WeightedBoxesFusion(weights=[1, 2, 3, 4])
    assert fuser.subset([1, 3]).weights == [2.0, 4.0] and fuser.weights == [1, 2, 3, 4]
    assert NMSFusion().subset([0]).weights is None


@pytest.mark.parametrize('device', ['auto', 'same', 'cpu'])
def test_wbf_device_option_keeps_results_and_device(device):
    a, b = _pair()
    ref = WeightedBoxesFusion().fuse([a, b], SHAPE)
    got = WeightedBoxesFusion(device=device).fuse([a, b], SHAPE)
    torch.testing.assert_close(got.bboxes, ref.bboxes)
    assert got.bboxes.device == a.bboxes.device
    if torch.cuda.is_available():
        on_gpu = WeightedBoxesFusion(device=device).fuse([a.cuda(), b.cuda()], SHAPE)
        assert on_gpu.bboxes.is_cuda
        torch.testing.assert_close(on_gpu.bboxes.cpu(), ref.bboxes, rtol=1e-5, atol=1e-4)


def test_a_user_fuser_is_one_registered_class():
    @TASK_UTILS.register_module(force=True)
    class BestModelFusion(BaseFuser):
        """Keeps the detections of the model with the highest top score."""

        def fuse_image(self, results, img_shape):
            return max(results, key=lambda r: float(r.scores.max()) if len(r) else -1.0)

    a, b = _pair()
    fuser = build_fuser(dict(type='BestModelFusion'))
    assert fuser.fuse_batch([[b, a]], [SHAPE])[0] is a


@pytest.mark.parametrize('name', ['WeightedBoxesFusion', 'NMSFusion'])
def test_max_per_img_keeps_each_images_best(name):
    rng = np.random.default_rng(7)
    batch = [_random_members(rng) for _ in range(3)]
    fuser = TASK_UTILS.build(dict(type=name))
    full = fuser.fuse_batch(batch, [SHAPE] * 3)
    capped = fuser.fuse_batch(batch, [SHAPE] * 3, max_per_img=5)
    assert all(len(f) > 5 for f in full)
    for f, c in zip(full, capped):
        assert len(c) == 5
        torch.testing.assert_close(c.scores, f.scores.sort(descending=True).values[:5])

"""Values outside their range are one ConfigError line, never clipped silently."""
import pytest

from divdet.fusion import NMSFusion, SoftNMSFusion, WeightedBoxesFusion, build_fuser
from divdet.utils import ConfigError
from divdet.utils.ranges import check_post_processing, check_range


@pytest.mark.parametrize('value, interval, integer, ok', [
    (0.5, '(0, 1]', False, True), (1, '(0, 1]', False, True), (0, '(0, 1]', False, False),
    (2, '(0, 1]', False, False), (-1, '(0, 1]', False, False),
    (float('nan'), '[0, 1)', False, False),
    (0.0, '[0, 1)', False, True), (1.0, '[0, 1)', False, False), (True, '[0, 1)', False, False),
    ('0.5', '[0, 1)', False, False), (1, '[1, inf)', True, True), (0, '[1, inf)', True, False),
    (2.0, '[1, inf)', True, False),
])
def test_check_range(value, interval, integer, ok):
    if ok:
        assert check_range('x', value, interval, integer) == value
    else:
        with pytest.raises(ConfigError, match=r'^x must be '):
            check_range('x', value, interval, integer)


@pytest.mark.parametrize('cfg, message', [
    (dict(type='WeightedBoxesFusion', iou_thr=2),
     r'WeightedBoxesFusion.iou_thr must be in \(0, 1\], found 2'),
    (dict(type='WeightedBoxesFusion', iou_thr=-1), r'iou_thr must be in \(0, 1\], found -1'),
    (dict(type='WeightedBoxesFusion', skip_box_thr=1.0), r'skip_box_thr must be in \[0, 1\)'),
    (dict(type='NMSFusion', iou_thr=0), r'NMSFusion.iou_thr must be in \(0, 1\]'),
    (dict(type='SoftNMSFusion', sigma=0), r'SoftNMSFusion.sigma must be in \(0, inf\)'),
    (dict(type='SoftNMSFusion', min_score=1.5), r'SoftNMSFusion.min_score must be in \[0, 1\)'),
])
def test_fusers_refuse_values_outside_their_ranges(cfg, message):
    with pytest.raises(ConfigError, match=message):
        build_fuser(cfg)


def test_fusers_take_values_inside_their_ranges():
    WeightedBoxesFusion(iou_thr=1.0, skip_box_thr=0.0)
    NMSFusion(iou_thr=0.01)
    SoftNMSFusion(iou_thr=0.3, sigma=0.5, min_score=0.0)


@pytest.mark.parametrize('key, value, message', [
    ('max_per_img', 0, r'test_cfg.max_per_img must be in \[1, inf\), found 0'),
    ('score_thr', 1.5, r'test_cfg.score_thr must be in \[0, 1\), found 1.5'),
    ('nms_pre', 0, r'test_cfg.nms_pre must be in \[1, inf\), found 0'),
])
def test_post_processing_values(key, value, message):
    cfg = dict(nms_pre=1000, nms=dict(type='nms', iou_threshold=0.45), score_thr=0.02,
               max_per_img=100)
    check_post_processing(cfg, 'test_cfg')
    check_post_processing(dict(cfg, nms_pre=-1), 'test_cfg')  # mmdet's "all"
    with pytest.raises(ConfigError, match=message):
        check_post_processing(dict(cfg, **{key: value}), 'test_cfg')
    with pytest.raises(ConfigError, match=r'test_cfg.nms.iou_threshold must be in \(0, 1\]'):
        check_post_processing(dict(cfg, nms=dict(type='nms', iou_threshold=1.2)), 'test_cfg')

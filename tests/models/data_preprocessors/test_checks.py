"""Images with the wrong number of channels are refused, naming the image."""
import pytest
import torch
from mmdet.structures import DetDataSample
from mmpretrain.structures import DataSample

from divdet.models import CheckedDetDataPreprocessor, DividedClsDataPreprocessor
from divdet.utils import ImageError


def _det_batch(channels):
    inputs = [torch.randint(0, 255, (c, 16, 16), dtype=torch.uint8) for c in channels]
    samples = [DetDataSample(metainfo=dict(img_path=f'img{i}.png', img_shape=(16, 16)))
               for i in range(len(channels))]
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('bgr_to_rgb', [True, False])
@pytest.mark.parametrize('channels', [1, 4])
def test_det_preprocessor_refuses_wrong_channels(channels, bgr_to_rgb):
    pre = CheckedDetDataPreprocessor(mean=[1, 2, 3], std=[1, 1, 1], bgr_to_rgb=bgr_to_rgb)
    with pytest.raises(ImageError, match=rf'expected images with 3 channels .*found {channels} '
                       r'in image 1 of the batch \(img1\.png\)'):
        pre(_det_batch([3, channels]))


def test_det_preprocessor_matches_mmdet_on_good_input():
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    batch = _det_batch([3, 3])
    ours = CheckedDetDataPreprocessor(mean=[1, 2, 3], std=[2, 2, 2], bgr_to_rgb=True)(batch)
    stock = DetDataPreprocessor(mean=[1, 2, 3], std=[2, 2, 2], bgr_to_rgb=True)(batch)
    torch.testing.assert_close(ours['inputs'], stock['inputs'])
    # one mean value broadcasts to any channel count: nothing to check
    CheckedDetDataPreprocessor(mean=[1], std=[1])(_det_batch([1, 1]))


def test_cls_preprocessor_refuses_wrong_channels_in_a_view():
    pre = DividedClsDataPreprocessor(num_classes=4, mean=[10, 20, 30], std=[2, 2, 2])
    good = [torch.zeros(3, 8, 8, dtype=torch.uint8)] * 2
    bad = [torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(1, 8, 8, dtype=torch.uint8)]
    samples = [DataSample(metainfo=dict(img_path=f'{i}.jpg')).set_gt_label(0) for i in range(2)]
    with pytest.raises(ImageError, match=r'found 1 in image 1 of the batch \(1\.jpg\)'):
        pre(dict(inputs=[good, bad], data_samples=samples))


@pytest.mark.parametrize('pad', [1, 32])
def test_det_preprocessor_stacks_same_shaped_images_with_mmdet_values(pad):
    """Same-shaped images go through mmdet's batched path: the per-image path's
    values and metainfo, with operators that do not grow with the batch."""
    from mmdet.models.data_preprocessors import DetDataPreprocessor

    from divdet.apis.complexity import count_ops_by_range
    kwargs = dict(mean=[1, 2, 3], std=[2, 3, 4], bgr_to_rgb=True, pad_size_divisor=pad)
    ours, stock = CheckedDetDataPreprocessor(**kwargs), DetDataPreprocessor(**kwargs)
    counts = []
    for n in (2, 8):
        batch = _det_batch([3] * n)
        a, b = ours(batch), stock(_det_batch([3] * n) | dict(inputs=list(batch['inputs'])))
        assert torch.equal(a['inputs'], b['inputs'])
        assert [s.metainfo for s in a['data_samples']] == [s.metainfo for s in b['data_samples']]
        counts.append(count_ops_by_range(lambda batch=batch: ours(batch), ())['total'])
    assert counts[0] == counts[1]

"""CheckedCocoDataset: each broken input gives a clear error or a logged skip."""
import json
import logging

import pytest

from divdet.datasets import CheckedCocoDataset, make_shapes_dataset
from divdet.datasets.shapes import CLASSES
from divdet.evaluation import DividedCocoMetric
from divdet.utils import AnnotationError, ImageError
from tests.conftest import scoped

_scope = scoped('mmdet')
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)]


@pytest.fixture
def data(tmp_path):
    make_shapes_dataset(tmp_path, num_train=6, num_val=2, size=64, empty_fraction=0.0, seed=3)
    return tmp_path


def _ann(data):
    return json.loads((data / 'annotations' / 'instances_train.json').read_text())


def _write(data, ann):
    (data / 'annotations' / 'instances_train.json').write_text(json.dumps(ann))


def _build(data, **kwargs):
    cfg = dict(data_root=str(data), ann_file='annotations/instances_train.json',
               data_prefix=dict(img='train/'), metainfo=dict(classes=CLASSES), pipeline=PIPELINE,
               filter_cfg=dict(filter_empty_gt=True))
    cfg.update(kwargs)
    return CheckedCocoDataset(**cfg)


def test_valid_dataset_loads_like_mmdet(data):
    from mmdet.datasets import CocoDataset
    ours = _build(data)
    stock = CocoDataset(**{k: v for k, v in dict(
        data_root=str(data), ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=CLASSES), pipeline=PIPELINE,
        filter_cfg=dict(filter_empty_gt=True)).items()})
    assert len(ours) == len(stock) == 6
    for i in range(len(ours)):
        assert ours.get_data_info(i)['instances'] == stock.get_data_info(i)['instances']
    assert ours[0]['img'].shape[2] == 3


def test_missing_annotation_file(data):
    with pytest.raises(AnnotationError, match=r"annotation file .*instances_test\.json' not found"):
        _build(data, ann_file='annotations/instances_test.json')


def test_malformed_annotation_json(data):
    (data / 'annotations' / 'instances_train.json').write_text('{"images": [1, 2,')
    with pytest.raises(AnnotationError, match=r'is not valid JSON: .* line 1, column'):
        _build(data)


@pytest.mark.parametrize('section', ['images', 'annotations', 'categories'])
def test_annotation_file_without_a_section(data, section):
    ann = _ann(data)
    del ann[section]
    _write(data, ann)
    with pytest.raises(AnnotationError, match=f"expected '{section}' to be a list, found nothing"):
        _build(data)


def test_image_entry_without_size(data):
    ann = _ann(data)
    del ann['images'][2]['height']
    _write(data, ann)
    with pytest.raises(AnnotationError, match=r"images\[2\] lacks \['height'\]"):
        _build(data)


def test_config_classes_not_in_file(data):
    with pytest.raises(AnnotationError, match=r"classes 'cat' are not among the file's category "
                       r"names 'circle', 'square', 'triangle'"):
        _build(data, metainfo=dict(classes=('circle', 'cat')))


def test_unknown_category_id(data):
    ann = _ann(data)
    ann['annotations'][1]['category_id'] = 99
    bad_id = ann['annotations'][1]['id']
    _write(data, ann)
    with pytest.raises(AnnotationError, match=rf'annotation id {bad_id} .* category_id 99, which '
                       r'is not among the file\'s categories 1, 2, 3'):
        _build(data)


@pytest.mark.parametrize('bbox', [[1, 2, 3], [1, 2, float('nan'), 4], 'x'])
def test_malformed_bbox(data, bbox):
    ann = _ann(data)
    ann['annotations'][0]['bbox'] = bbox
    _write(data, ann)
    with pytest.raises(AnnotationError, match=r'expected \[x, y, width, height\] with 4 finite'):
        _build(data)


def test_degenerate_and_outside_boxes_are_skipped_and_logged(data, monkeypatch):
    ann = _ann(data)
    first, second = ann['annotations'][0], ann['annotations'][1]
    first['bbox'][2] = 0.5  # width < 1 pixel
    image = next(i for i in ann['images'] if i['id'] == second['image_id'])
    second['bbox'] = [image['width'] + 5, 3, 10, 10]  # right of the image
    _write(data, ann)
    logged = []
    monkeypatch.setattr('divdet.datasets.coco.print_log',
                        lambda msg, logger, level: logged.append((level, msg)))
    dataset = _build(data)
    log = '\n'.join(msg for level, msg in logged if level == logging.WARNING)
    boxes = sum(len(dataset.get_data_info(i)['instances']) for i in range(len(dataset)))
    assert boxes == len(ann['annotations']) - 2
    assert (f'{data}/annotations/instances_train.json: skipped 1 degenerate boxes '
            f'(width or height < 1, or area <= 0) (annotation ids {first["id"]})') in log
    assert (f'skipped 1 boxes entirely outside their image (annotation ids {second["id"]})'
            in log)


def test_listed_image_missing_on_disk(data):
    (data / 'train' / '000001.jpg').unlink()
    with pytest.raises(ImageError, match=r'1 of 6 listed images are missing on disk: .*'
                       r'000001\.jpg; check data_root'):
        _build(data)


def test_wrong_image_prefix_names_data_prefix(data):
    with pytest.raises(ImageError, match=r"6 of 6 .*data_prefix=\{'img': .*images/"):
        _build(data, data_prefix=dict(img='images/'))


def test_corrupt_image_names_the_file(data):
    (data / 'train' / '000002.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    dataset = _build(data, check_images=False)  # found when loaded, not at start-up
    idx = next(i for i in range(len(dataset))
               if dataset.get_data_info(i)['img_path'].endswith('000002.jpg'))
    with pytest.raises(ImageError, match=r'000002\.jpg\) could not be decoded; the file is '
                       'corrupt'):
        dataset[idx]
    dataset[(idx + 1) % len(dataset)]  # the others still load


def test_pipeline_bug_keeps_its_own_error(data):
    dataset = _build(data, pipeline=[dict(type='LoadImageFromFile'),
                                     dict(type='Resize', scale=(-1, 0))])
    with pytest.raises(Exception) as info:
        dataset[0]
    assert not isinstance(info.value, ImageError)


def test_empty_dataset_after_filtering(data):
    ann = _ann(data)
    ann['annotations'] = [a for a in ann['annotations'] if a['category_id'] != 1]
    for a in ann['annotations']:
        a['category_id'] = 2
    _write(data, ann)
    with pytest.raises(AnnotationError, match=r'no images left after filtering \(6 listed'):
        _build(data, metainfo=dict(classes=('circle', )))


def test_file_with_no_images(data):
    _write(data, dict(images=[], annotations=[], categories=_ann(data)['categories']))
    with pytest.raises(AnnotationError, match='the file lists no images'):
        _build(data)


def test_metric_reads_the_annotation_file_with_checks(data):
    with pytest.raises(AnnotationError, match='not found'):
        DividedCocoMetric(ann_file=str(data / 'annotations' / 'missing.json'))
    metric = DividedCocoMetric(ann_file=str(data / 'annotations' / 'instances_val.json'))
    assert len(metric._coco_api.get_img_ids()) == 2


@pytest.mark.parametrize('content', [b'', b'\xff\xd8 not a jpeg'])
def test_unreadable_image_is_found_at_start_up(data, content):
    (data / 'train' / '000002.jpg').write_bytes(content)
    with pytest.raises(ImageError, match=r'1 listed images cannot be read: .*000002\.jpg \('):
        _build(data)


def test_zero_byte_image_when_loaded_is_one_line(data):
    (data / 'train' / '000002.jpg').write_bytes(b'')
    dataset = _build(data, check_images=False)
    idx = next(i for i in range(len(dataset))
               if dataset.get_data_info(i)['img_path'].endswith('000002.jpg'))
    with pytest.raises(ImageError) as info:
        dataset[idx]
    assert '\n' not in str(info.value) and '000002.jpg) could not be decoded' in str(info.value)


@pytest.mark.parametrize('section', ['images', 'annotations', 'categories'])
def test_duplicate_ids_are_errors(data, section):
    ann = _ann(data)
    entries = ann[section]
    later, first = (3, 1) if len(entries) > 3 else (2, 0)  # 3 categories only
    entries[later]['id'] = entries[first]['id']
    _write(data, ann)
    singular = {'images': 'image', 'annotations': 'annotation', 'categories': 'category'}[section]
    with pytest.raises(AnnotationError, match=rf'1 {singular} id\(s\) appear more than once '
                       rf"\({entries[first]['id']}\); every {singular} needs its own id"):
        _build(data)


def test_image_size_differing_from_the_file_is_reported(data):
    ann = _ann(data)
    image = ann['images'][1]
    real = (image['width'], image['height'])
    image['width'], image['height'] = 2 * real[0], real[1] + 7
    _write(data, ann)
    with pytest.raises(AnnotationError, match=(
            rf"1 images differ in size .*image id {image['id']} .*{image['file_name']}\): "
            rf'{2 * real[0]}x{real[1] + 7} in the file, {real[0]}x{real[1]} on disk')):
        _build(data)


def _reverse_categories(path):
    ann = json.loads(path.read_text())
    ann['categories'] = ann['categories'][::-1]
    path.write_text(json.dumps(ann))


def test_categories_in_another_order_keep_the_config_labels(data):
    before = _build(data)
    labels = [[i['bbox_label'] for i in before.get_data_info(k)['instances']]
              for k in range(len(before))]
    assert sorted({x for row in labels for x in row}) == [0, 1, 2]
    _reverse_categories(data / 'annotations' / 'instances_train.json')
    after = _build(data)
    assert [[i['bbox_label'] for i in after.get_data_info(k)['instances']]
            for k in range(len(after))] == labels


def _metric_on_ground_truth(ann_file, shift):
    """AP of predictions that are the ground truth, each box moved by ``shift`` px."""
    import numpy as np
    import torch
    ann = json.loads(open(ann_file).read())
    names = {c['id']: c['name'] for c in ann['categories']}
    metric = DividedCocoMetric(ann_file=ann_file)
    metric.dataset_meta = dict(classes=CLASSES)
    samples = []
    for image in ann['images']:
        boxes = [a for a in ann['annotations'] if a['image_id'] == image['id']]
        xyxy = [[x + shift, y, x + w + shift, y + h] for x, y, w, h in (a['bbox'] for a in boxes)]
        pred = dict(bboxes=torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4),
                    scores=torch.tensor(np.linspace(0.9, 0.5, len(boxes)), dtype=torch.float32),
                    labels=torch.tensor([CLASSES.index(names[a['category_id']]) for a in boxes],
                                        dtype=torch.long))
        samples.append(dict(img_id=image['id'], ori_shape=(image['height'], image['width']),
                            pred_instances=pred))
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_metric_ap_is_the_same_with_categories_reversed(data):
    ann_file = data / 'annotations' / 'instances_train.json'
    before = _metric_on_ground_truth(str(ann_file), shift=2)
    _reverse_categories(ann_file)
    after = _metric_on_ground_truth(str(ann_file), shift=2)
    assert 0 < before['coco/bbox_mAP'] < 1
    assert after == before


def test_missing_iscrowd_and_area_are_filled_and_evaluate(data, monkeypatch):
    ann_file = data / 'annotations' / 'instances_train.json'
    reference = _metric_on_ground_truth(str(ann_file), shift=0)
    ann = _ann(data)
    for a in ann['annotations']:
        del a['iscrowd'], a['area']
    _write(data, ann)
    logged = []
    monkeypatch.setattr('divdet.datasets.coco.print_log',
                        lambda msg, logger, level: logged.append((level, msg)))
    metric = _metric_on_ground_truth(str(ann_file), shift=0)
    assert metric == reference and metric['coco/bbox_mAP'] == 1.0
    n = len(ann['annotations'])
    assert any(level == logging.WARNING and f'filled missing iscrowd in {n} and area in {n} '
               'annotations' in msg for level, msg in logged)


def test_annotations_of_no_listed_image_are_an_error(data):
    """mmdet drops them without a word (their boxes vanish from training and AP)."""
    ann = _ann(data)
    ann['annotations'][2]['image_id'] = 999
    _write(data, ann)
    with pytest.raises(AnnotationError, match=r'1 annotations have an image_id that is not an '
                                              rf"image of the file \(annotation ids "
                                              rf"{ann['annotations'][2]['id']}\)"):
        _build(data)


def test_corner_boxes_are_recognised_as_not_coco_xywh(data):
    """[x1, y1, x2, y2] written as [x, y, w, h]: most boxes run past their image."""
    ann = _ann(data)
    images = {img['id']: img for img in ann['images']}
    for a in ann['annotations']:
        x, y, w, h = a['bbox']
        a['bbox'] = [x, y, x + w, y + h]
        img = images[a['image_id']]
        a['bbox'][2] = max(a['bbox'][2], img['width'] - x + 4)  # every box past the edge
    _write(data, ann)
    with pytest.raises(AnnotationError, match=r'boxes run past the right or bottom edge of '
                                              r'their image .* probably not COCO '
                                              r'\[x, y, width, height\]'):
        _build(data)


def test_a_few_boxes_past_the_edge_stay_a_warning(data):
    ann = _ann(data)
    image = next(i for i in ann['images'] if i['id'] == ann['annotations'][0]['image_id'])
    ann['annotations'][0]['bbox'][2] = image['width']  # one box past the right edge
    _write(data, ann)
    assert len(_build(data)) == len(ann['images'])


@pytest.mark.parametrize('value', ['64', 0, -3, None, True])
def test_image_size_that_is_not_a_positive_number(data, value):
    ann = _ann(data)
    ann['images'][1]['width'] = value
    _write(data, ann)
    with pytest.raises(AnnotationError, match=r"images\[1\] \(id 2\) has \{'width': "):
        _build(data)


def test_unreadable_annotation_file_is_one_line(data, monkeypatch):
    import divdet.datasets.coco as coco_module

    def denied(path, *args, **kwargs):
        raise PermissionError(13, 'Permission denied', str(path))
    monkeypatch.setattr(coco_module, 'open', denied, raising=False)
    with pytest.raises(AnnotationError, match=r"instances_train.json' cannot be read "
                                              r'\(Permission denied\)'):
        _build(data)

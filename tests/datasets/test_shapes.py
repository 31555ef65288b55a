"""The generated shapes dataset is real COCO: pycocotools and mmdet's CocoDataset read it."""
import cv2
from mmdet.datasets import CocoDataset
from pycocotools.coco import COCO

from divdet.datasets import SHAPES_CLASSES, make_shapes_dataset


def test_coco_files_and_images(tmp_path):
    anns = make_shapes_dataset(tmp_path, num_train=20, num_val=5, size=64, seed=0)
    coco = COCO(str(anns['train']))
    assert len(coco.getImgIds()) == 20
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(SHAPES_CLASSES)
    # every COCO field: mmdet's coco_error_analysis.py reads the supercategory
    assert all(c.get('supercategory') == 'shape' for c in coco.loadCats(coco.getCatIds()))
    per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert 0 in per_image and max(per_image) > 1  # some images empty, some with several
    labels = {a['category_id'] for a in coco.loadAnns(coco.getAnnIds())}
    assert labels == {1, 2, 3}
    for img in coco.loadImgs(coco.getImgIds()):
        pixels = cv2.imread(str(tmp_path / 'train' / img['file_name']))
        assert pixels.shape == (img['height'], img['width'], 3)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img['id'])):
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height']
    dataset = CocoDataset(data_root=str(tmp_path), ann_file='annotations/instances_val.json',
                          data_prefix=dict(img='val/'), metainfo=dict(classes=SHAPES_CLASSES),
                          test_mode=True, pipeline=[])
    assert len(dataset) == 5


def test_deterministic(tmp_path):
    a = make_shapes_dataset(tmp_path / 'a', num_train=3, num_val=1, seed=7)
    b = make_shapes_dataset(tmp_path / 'b', num_train=3, num_val=1, seed=7)
    assert a['train'].read_text() == b['train'].read_text()


def test_hard_preset_is_real_coco_and_repeats(tmp_path):
    from divdet.datasets import HARD_SHAPES_CLASSES, make_hard_shapes_dataset
    anns = make_hard_shapes_dataset(tmp_path / 'a', num_train=40, num_val=5, size=96, seed=4)
    again = make_hard_shapes_dataset(tmp_path / 'b', num_train=40, num_val=5, size=96, seed=4)
    assert anns['train'].read_text() == again['train'].read_text()
    assert ((tmp_path / 'a' / 'train' / '000007.jpg').read_bytes()
            == (tmp_path / 'b' / 'train' / '000007.jpg').read_bytes())
    coco = COCO(str(anns['train']))
    assert len(HARD_SHAPES_CLASSES) == 8
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(HARD_SHAPES_CLASSES)
    anns_ = coco.loadAnns(coco.getAnnIds())
    assert {a['category_id'] for a in anns_} == set(range(1, 9))
    sides = [a['bbox'][2] for a in anns_]
    assert min(sides) < 0.12 * 96  # small objects
    per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert max(per_image) >= 6
    # some objects overlap (partial occlusion)
    from divdet.datasets.shapes import _iou
    overlaps = sum(_iou(a['bbox'], b['bbox']) > 0.05 for i in coco.getImgIds()
                   for a in coco.loadAnns(coco.getAnnIds(imgIds=i))
                   for b in coco.loadAnns(coco.getAnnIds(imgIds=i)) if a['id'] < b['id'])
    assert overlaps > 0

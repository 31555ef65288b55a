"""Saved detections of several models: loading (COCO JSON and test.py pickles), fusing,
pycocotools evaluation and weight tuning (divdet.fusion.results)."""
import json
import warnings

import mmengine
import numpy as np
import pytest
import torch
from ensemble_boxes import weighted_boxes_fusion as eb_wbf
from pycocotools.cocoeval import COCOeval

from divdet.datasets.coco import CheckedCOCO
from divdet.fusion import NMSFusion, WeightedBoxesFusion
from divdet.fusion.results import (
    evaluate,
    fuse_detections,
    load_detections,
    to_coco_results,
    tune,
    weight_grid,
)
from divdet.utils.errors import FusionInputError

CATEGORIES = [dict(id=3, name='circle'), dict(id=7, name='square'), dict(id=9, name='triangle')]


def make_annotations(path, num_images=12, seed=0):
    """A COCO annotation file: images of different sizes, 1-4 objects each."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(num_images):
        w, h = int(rng.integers(80, 160)), int(rng.integers(60, 120))
        images.append(dict(id=100 + i, file_name=f'{i}.jpg', width=w, height=h))
        for _ in range(int(rng.integers(1, 5))):
            bw, bh = rng.uniform(10, w / 2), rng.uniform(10, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append(dict(id=len(anns) + 1, image_id=100 + i, bbox=[x, y, bw, bh],
                             area=bw * bh, iscrowd=0,
                             category_id=CATEGORIES[int(rng.integers(0, 3))]['id']))
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=CATEGORIES)))
    return path


def make_results(ann, noise, seed, extra=2):
    """A model's COCO results: the ground truth moved by ``noise`` pixels, random
    scores, plus ``extra`` false detections per image."""
    rng = np.random.default_rng(seed)
    coco = json.loads(ann.read_text())
    sizes = {img['id']: (img['width'], img['height']) for img in coco['images']}
    out = []
    for a in coco['annotations']:
        x, y, w, h = a['bbox']
        out.append(dict(image_id=a['image_id'], category_id=a['category_id'],
                        bbox=[x + rng.normal(0, noise), y + rng.normal(0, noise),
                              w + rng.normal(0, noise), h + rng.normal(0, noise)],
                        score=float(rng.uniform(0.3, 1.0))))
    for img_id, (w, h) in sizes.items():
        for _ in range(extra):
            out.append(dict(image_id=img_id, category_id=CATEGORIES[int(rng.integers(0, 3))]['id'],
                            bbox=[rng.uniform(0, w / 2), rng.uniform(0, h / 2), 20.0, 15.0],
                            score=float(rng.uniform(0.0, 0.5))))
    return out


def to_pickle(results, coco, path):
    """The same detections as tools/test.py --out writes them (labels index the classes)."""
    label_of = {c['id']: k for k, c in enumerate(coco.dataset['categories'])}
    samples = []
    for img_id in sorted(coco.getImgIds()):
        mine = [r for r in results if r['image_id'] == img_id]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (r['bbox'] for r in mine)]
        samples.append(dict(img_id=img_id, pred_instances=dict(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor([r['score'] for r in mine], dtype=torch.float32),
            labels=torch.tensor([label_of[r['category_id']] for r in mine]))))
    mmengine.dump(samples, str(path))
    return path


@pytest.fixture
def data(tmp_path):
    ann = make_annotations(tmp_path / 'ann.json')
    coco = CheckedCOCO(str(ann))
    files = []
    for t, noise in enumerate((1.0, 2.0, 4.0)):
        path = tmp_path / f'model{t}.bbox.json'
        path.write_text(json.dumps(make_results(ann, noise, seed=t)))
        files.append(path)
    return ann, coco, files


def _direct_ap(coco, results):
    evaluator = COCOeval(coco, coco.loadRes(results), 'bbox')
    evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    return float(evaluator.stats[0])


def test_json_boxes_are_converted_and_fused_as_ensemble_boxes_does(data):
    ann, coco, files = data
    models = [load_detections(str(f), coco) for f in files]
    weights = [2.0, 1.0, 1.0]
    fused = fuse_detections(models, WeightedBoxesFusion(weights=weights, iou_thr=0.55), coco)
    raw = [json.loads(f.read_text()) for f in files]
    for img in coco.dataset['images']:
        w, h = img['width'], img['height']
        per_model = [[r for r in rs if r['image_id'] == img['id']] for rs in raw]
        boxes = [[[x / w, y / h, (x + bw) / w, (y + bh) / h] for x, y, bw, bh in
                  (r['bbox'] for r in m)] for m in per_model]
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            eb, es, el = eb_wbf(boxes, [[r['score'] for r in m] for m in per_model],
                                [[r['category_id'] for r in m] for m in per_model],
                                weights=weights, iou_thr=0.55)
        got = fused.boxes[img['id']] / [w, h, w, h]
        order, ref = np.lexsort((fused.cat_ids[img['id']], -fused.scores[img['id']])), \
            np.lexsort((el, -es))
        np.testing.assert_allclose(got[order], eb[ref], atol=1e-6)
        np.testing.assert_allclose(fused.scores[img['id']][order], es[ref], atol=1e-9)
        assert fused.cat_ids[img['id']][order].tolist() == el[ref].astype(int).tolist()
    back = to_coco_results(fused)  # corners back to [x, y, w, h]
    first = next(r for r in back if r['image_id'] == 100)
    b = fused.boxes[100][0]
    assert first['bbox'] == pytest.approx([b[0], b[1], b[2] - b[0], b[3] - b[1]])


def test_a_pickle_gives_the_same_detections_as_its_json(data, tmp_path):
    ann, coco, files = data
    pkl = to_pickle(json.loads(files[0].read_text()), coco, tmp_path / 'model0.pkl')
    a, b = load_detections(str(files[0]), coco), load_detections(str(pkl), coco)
    assert sorted(a.scores) == sorted(b.scores)
    for i in a.scores:
        order_a, order_b = np.argsort(-a.scores[i], kind='stable'), np.argsort(-b.scores[i],
                                                                                kind='stable')
        np.testing.assert_allclose(a.boxes[i][order_a], b.boxes[i][order_b], atol=1e-3)
        assert a.cat_ids[i][order_a].tolist() == b.cat_ids[i][order_b].tolist()


def test_evaluation_equals_pycocotools(data):
    _, coco, files = data
    model = load_detections(str(files[1]), coco)
    assert evaluate(model, coco)['bbox_mAP'] == pytest.approx(
        _direct_ap(coco, json.loads(files[1].read_text())), abs=1e-12)
    fused = fuse_detections([load_detections(str(f), coco) for f in files], NMSFusion(), coco)
    assert evaluate(fused, coco)['bbox_mAP'] == pytest.approx(
        _direct_ap(coco, to_coco_results(fused)), abs=1e-12)


def test_bad_result_files_name_the_file_and_the_problem(data, tmp_path):
    _, coco, files = data
    entries = json.loads(files[0].read_text())
    cases = {
        'nan': ([dict(entries[0], score=float('nan'))] + entries[1:],
                r'1 detections have NaN or infinite boxes or scores \(first in image 100\)'),
        'image': ([dict(entries[0], image_id=999)] + entries[1:],
                  r'1 image id\(s\) are not in the annotation file \(\[999\]\)'),
        'category': ([dict(entries[0], category_id=4)] + entries[1:],
                     r'category id\(s\) \[4\] are not in the annotation file'),
        'entry': ([dict(image_id=100, category_id=3, bbox=[1, 2, 3])],
                  'entry 0 is not a detection'),
        'object': (dict(a=1), 'expected a list of detections'),
        'negative': ([dict(entries[0], bbox=[10, 10, -5, 4])] + entries[1:],
                     r'entry 0 \(image 100\) has a negative width or height or a score outside'),
        'score': ([dict(entries[0], score=1.5)] + entries[1:],
                  r'entry 0 \(image 100\) has a negative width or height or a score outside'),
        'floatid': ([dict(entries[0], image_id=100.5)] + entries[1:],
                    r'entry 0 is not a detection \{image_id, category_id \(integers\)'),
        'floatcat': ([dict(entries[0], category_id=1.0)] + entries[1:],
                     r'entry 0 is not a detection'),
        'booleanscore': ([dict(entries[0], score=True)] + entries[1:],
                         r'entry 0 is not a detection'),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f'{name}.json'
        path.write_text(json.dumps(content))
        with pytest.raises(FusionInputError, match=rf'{name}\.json: {message}'):
            load_detections(str(path), coco)
    pkl = to_pickle(entries, coco, tmp_path / 'wrong.pkl')
    with pytest.raises(FusionInputError, match='wrong.pkl: image 100 has label 2, but there are '
                                               '2 classes'):
        load_detections(str(pkl), coco, classes=['circle', 'square'])


def test_a_bad_weight_names_the_model(data):
    _, coco, files = data
    models = [load_detections(str(f), coco) for f in files[:2]]
    with pytest.raises(FusionInputError, match=r'model \(member\) 1 is 0.0'):
        fuse_detections(models, WeightedBoxesFusion(weights=[1.0, 0.0]), coco)


def test_weight_grid_has_one_entry_per_ratio():
    grid = weight_grid(2, [1, 2, 3])
    assert (1.0, 1.0) in grid and (2.0, 2.0) not in grid and len(grid) == 7


def test_tuning_reports_the_best_setting_and_its_held_out_ap(data):
    _, coco, files = data
    models = [load_detections(str(f), coco) for f in files]
    found = tune(models, dict(type='WeightedBoxesFusion'), coco, [1, 3], [0.5, 0.6],
                 lambda cfg: WeightedBoxesFusion(**{k: v for k, v in cfg.items() if k != 'type'}))
    assert len(found['trials']) == len(weight_grid(3, [1, 3])) * 2
    best = found['best']
    assert best['tune_mAP'] == max(t['tune_mAP'] for t in found['trials'])
    ids = sorted(coco.getImgIds())[1::2]
    held = fuse_detections(models, WeightedBoxesFusion(weights=best['weights'],
                                                       iou_thr=best['iou_thr']), coco, ids)
    assert best['held_out_mAP'] == pytest.approx(evaluate(held, coco, ids)['bbox_mAP'])


def _reordered(ann, tmp_path):
    """The annotation file with its categories listed in another order."""
    data = json.loads(ann.read_text())
    data['categories'] = data['categories'][::-1]
    path = tmp_path / 'reordered.json'
    path.write_text(json.dumps(data))
    return path


def _config_pickle(entries, coco, path, classes, saved: bool):
    """A tools/test.py --out pickle whose labels index the config's ``classes``."""
    by_name = {c['id']: c['name'] for c in coco.dataset['categories']}
    samples = []
    for img_id in sorted(coco.getImgIds()):
        mine = [r for r in entries if r['image_id'] == img_id]
        info = coco.imgs[img_id]
        sample = dict(img_id=img_id, img_path=f"data/val/{info['file_name']}",
                      ori_shape=(info['height'], info['width']), pred_instances=dict(
                          bboxes=torch.tensor([[x, y, x + w, y + h] for x, y, w, h in
                                               (r['bbox'] for r in mine)]).reshape(-1, 4),
                          scores=torch.tensor([r['score'] for r in mine]),
                          labels=torch.tensor([classes.index(by_name[r['category_id']])
                                               for r in mine])))
        if saved:
            sample['classes'] = tuple(classes)
        samples.append(sample)
    mmengine.dump(samples, str(path))
    return path


@pytest.mark.parametrize('how', ['saved', '--classes'])
def test_pickle_labels_are_matched_to_categories_by_name(data, tmp_path, how):
    """The config's classes in another order than the file's categories: the labels
    still go to the right categories (the pickle's AP equals its JSON twin's)."""
    ann, _, files = data
    coco = CheckedCOCO(str(_reordered(ann, tmp_path)))
    entries = json.loads(files[0].read_text())
    classes = ['circle', 'square', 'triangle']  # the config's order; the file lists them reversed
    pkl = _config_pickle(entries, coco, tmp_path / 'model.pkl', classes, saved=how == 'saved')
    det = load_detections(str(pkl), coco, classes if how == '--classes' else None)
    twin = load_detections(str(files[0]), coco)
    assert evaluate(det, coco)['bbox_mAP'] == pytest.approx(evaluate(twin, coco)['bbox_mAP'],
                                                            abs=1e-6)
    assert evaluate(det, coco)['bbox_mAP'] > 0.3


def test_pickle_classes_disagreeing_with_the_given_classes_are_refused(data, tmp_path):
    ann, coco, files = data
    entries = json.loads(files[0].read_text())
    pkl = _config_pickle(entries, coco, tmp_path / 'model.pkl', ['circle', 'square', 'triangle'],
                         saved=True)
    with pytest.raises(FusionInputError, match=r"its labels index the classes \('circle', "
                                               r"'square', 'triangle'\).*--classes gives"):
        load_detections(str(pkl), coco, ['square', 'circle', 'triangle'])


@pytest.mark.parametrize('what', ['img_path', 'ori_shape'])
def test_pickle_of_another_split_is_refused(data, tmp_path, what):
    _, coco, files = data
    entries = json.loads(files[0].read_text())
    pkl = _config_pickle(entries, coco, tmp_path / 'model.pkl', ['circle', 'square', 'triangle'],
                         saved=True)
    samples = mmengine.load(str(pkl))
    samples[3][what] = 'other/000003.jpg' if what == 'img_path' else (7, 9)
    mmengine.dump(samples, str(pkl))
    with pytest.raises(FusionInputError, match=r'sample 3 \(image id 103\).*another split'):
        load_detections(str(pkl), coco)


def test_tuning_needs_two_images(tmp_path):
    ann = make_annotations(tmp_path / 'one.json', num_images=1)
    coco = CheckedCOCO(str(ann))
    det = load_detections(str(_write(tmp_path / 'r.json', make_results(ann, 1.0, 0))), coco)
    with pytest.raises(FusionInputError, match='tuning needs at least 2 images'):
        tune([det, det], dict(type='WeightedBoxesFusion'), coco, [1], [0.5],
             lambda cfg: WeightedBoxesFusion(**{k: v for k, v in cfg.items() if k != 'type'}))


def _write(path, content):
    path.write_text(json.dumps(content))
    return path

"""tools/analysis_tools/fuse_results.py: fuse saved detections, one AP table, COCO JSON out."""
import json

import pytest

from divdet.datasets.coco import CheckedCOCO
from divdet.fusion.results import evaluate, load_detections
from tests.fusion.test_results import make_annotations, make_results, to_pickle

TOOL = 'tools/analysis_tools/fuse_results.py'


def test_fuses_json_and_pickle_results_and_reports_every_model(tool, tmp_path):
    ann = make_annotations(tmp_path / 'ann.json')
    coco = CheckedCOCO(str(ann))
    a, b = tmp_path / 'a.bbox.json', tmp_path / 'b.pkl'
    a.write_text(json.dumps(make_results(ann, 1.0, seed=0)))
    to_pickle(make_results(ann, 3.0, seed=1), coco, b)
    out, metrics = tmp_path / 'fused.json', tmp_path / 'metrics.json'
    proc = tool(TOOL, str(ann), str(a), str(b), '--weights', '2', '1', '--fusion-options',
                'iou_thr=0.6', '--out', str(out), '--metrics-out', str(metrics))
    assert 'COCO box AP (%)' in proc.stdout and 'fused (WeightedBoxesFusion)' in proc.stdout
    report = json.loads(metrics.read_text())
    assert report['fusion'] == dict(type='WeightedBoxesFusion', iou_thr=0.6, weights=[2.0, 1.0])
    rows = {r['model']: r for r in report['rows']}
    assert set(rows) == {'a.bbox.json', 'b.pkl', 'fused (WeightedBoxesFusion)'}
    fused = json.loads(out.read_text())
    assert fused and set(fused[0]) == {'image_id', 'category_id', 'bbox', 'score'}
    # the table's numbers are pycocotools' on the files written and read
    assert rows['fused (WeightedBoxesFusion)']['bbox_mAP'] == pytest.approx(
        evaluate(load_detections(str(out), coco), coco)['bbox_mAP'], abs=1e-12)
    assert rows['b.pkl']['bbox_mAP'] == pytest.approx(
        evaluate(load_detections(str(b), coco), coco)['bbox_mAP'], abs=1e-12)
    table = proc.stdout[proc.stdout.index('COCO box AP'):]
    assert f"{100 * rows['a.bbox.json']['bbox_mAP']:.1f}" in table


def test_tune_weights_and_bad_input(tool, tmp_path):
    ann = make_annotations(tmp_path / 'ann.json')
    files = []
    for t in range(2):
        files.append(tmp_path / f'm{t}.json')
        files[-1].write_text(json.dumps(make_results(ann, 1.0 + 3 * t, seed=t)))
    proc = tool(TOOL, str(ann), *map(str, files), '--fusion', 'NMSFusion', '--tune-weights',
                '--tune-weight-values', '1', '2', '--tune-iou-values', '0.5', '0.6')
    assert 'tuned on 6 images (6 settings): weights [' in proc.stdout
    assert 'on the other 6 images' in proc.stdout
    bad = tool(TOOL, str(ann), *map(str, files), '--weights', '1', '0', check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        'divdet: error: fuse_results.py: argument --weights: the value must be in (0, inf), '
        'found 0.0 (see fuse_results.py --help)')
    bad = tool(TOOL, str(ann), *map(str, files), '--fusion', 'Median', check=False)
    assert bad.returncode == 2 and "found 'Median'" in bad.stderr


def test_outputs_and_values_are_checked_before_any_work(tool, tmp_path):
    from tests.fusion.test_results import make_annotations, make_results
    ann = make_annotations(tmp_path / 'ann.json')
    result = tmp_path / 'a.bbox.json'
    result.write_text(json.dumps(make_results(ann, 1.0, seed=0)))
    (tmp_path / 'file').write_text('x')
    for option, fragment in ((['--out', str(tmp_path / 'file' / 'f.json')],
                              "--out '"), (['--metrics-out', str(tmp_path)], 'is a folder'),
                             (['--tune-weights', '--tune-iou-values', '2'],
                              'argument --tune-iou-values: the value must be in (0, 1], found 2.0'),
                             (['--fusion-options', 'iou_thr=-1'],
                              'WeightedBoxesFusion.iou_thr must be in (0, 1], found -1')):
        proc = tool('tools/analysis_tools/fuse_results.py', str(ann), str(result), *option,
                    check=False)
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
        assert fragment in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / 'fused.bbox.json').exists()

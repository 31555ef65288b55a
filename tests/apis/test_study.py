"""divdet.apis.study: which runs a study makes and how it summarises them."""
import pytest

from divdet.apis import study as st
from divdet.utils import ConfigError


def test_runs_are_seed_major_and_variants_need_members():
    study = st.Study('c.py', 'w', [1, 2, 4], [0, 1],
                     st.parse_variants([['no-cot', 'model.bbox_head.loss_cot=None']]))
    names = [r.name for r in study.runs()]
    assert names[:5] == ['default_s1_seed0', 'default_s2_seed0', 'default_s4_seed0',
                         'no-cot_s2_seed0', 'no-cot_s4_seed0']
    assert len(names) == 10 and 'no-cot_s1_seed0' not in names
    run = study.runs()[3]
    assert study.overrides(run) == ['model.num_members=2', 'randomness.seed=0',
                                    'model.bbox_head.loss_cot=None']


@pytest.mark.parametrize('items, message', [
    ([['x']], "--variant 'x' needs KEY=VALUE overrides"),
    ([['x', 'a']], "--variant 'x' needs KEY=VALUE"),
    ([['x', 'a=1'], ['x', 'b=2']], 'used twice'),
    ([['default', 'a=1']], 'used twice'),
])
def test_bad_variants(items, message):
    with pytest.raises(ConfigError, match=message):
        st.parse_variants(items)


def _result(metrics, seed, s, minutes=1.0):
    return dict(variant='default', num_members=s, seed=seed, minutes=minutes, metrics=metrics)


def test_summary_in_percent_for_both_toolboxes():
    study = st.Study('c.py', 'w', [2], [0, 1])
    runs = study.runs()
    cls = {runs[0]: _result({'accuracy/top1': 98.0, 'accuracy/member0_top1': 97.0,
                             'accuracy/member1_top1': 95.0}, 0, 2),
           runs[1]: _result({'accuracy/top1': 99.0, 'accuracy/member0_top1': 96.0,
                             'accuracy/member1_top1': 98.0}, 1, 2)}
    (row, ) = st.summarise(study, cls, {}, {}, 'accuracy/top1')
    assert row['ensemble'] == pytest.approx((98.5, 0.7071), abs=1e-4)
    assert row['best_member_runs'] == [97.0, 98.0]
    assert row['mean_member'][0] == pytest.approx(96.5)
    det = {runs[0]: _result({'coco/bbox_mAP': 0.3, 'coco/member0_bbox_mAP': 0.25,
                             'coco/member1_bbox_mAP': 0.28}, 0, 2)}
    (row, ) = st.summarise(study, det, {}, {}, 'coco/bbox_mAP')
    assert row['ensemble'][0] == pytest.approx(30.0) and row['ensemble'][1] is None
    assert row['best_member'][0] == pytest.approx(28.0) and row['seeds'] == [0]
    md = st.markdown(study, [row], 'coco/bbox_mAP', 2)
    assert '1 of 2 runs finished' in md and '30.0 (one run)' in md and '+- 0.0' not in md
    assert st.plot([row], 'coco/bbox_mAP')[:4] == b'\x89PNG'


def test_truncated_or_incomplete_results_are_run_again(tmp_path, capsys):
    """A study killed while a result.json was written, or a test that reported no metric
    (e.g. max_per_img=0 before it was refused), must not stop every rerun with KeyError."""
    import json
    study = st.Study('c.py', str(tmp_path), [1], [0, 1, 2])
    good, truncated, no_metric = study.runs()
    for run, text in ((good, json.dumps(_result({'coco/bbox_mAP': 0.5}, 0, 1))),
                      (truncated, '{"variant": "default", "metr'),
                      (no_metric, json.dumps(_result({'coco/bbox_mAP_50': 0.5}, 2, 1)))):
        (tmp_path / 'runs' / run.name).mkdir(parents=True)
        (tmp_path / 'runs' / run.name / 'result.json').write_text(text)
    done = st.finished(study)
    assert list(done) == [good]
    out = capsys.readouterr().out
    assert out.count('is incomplete') == 2 and 'the run is done again' in out
    assert st.read_json(str(tmp_path / 'runs' / truncated.name / 'result.json'), {}) == {}


def test_truncated_latency_is_measured_again(tmp_path, capsys):
    path = tmp_path / 'latency.json'
    assert st.read_latency(str(path)) == {}
    path.write_text('{"default_s1": 12.5, "default_s2": 1')
    assert st.read_latency(str(path)) == {}
    assert 'is incomplete; the latency is measured again' in capsys.readouterr().out
    path.write_text('{"default_s1": 12.5}')
    assert st.read_latency(str(path)) == {'default_s1': 12.5}


def test_paired_statistics_equal_a_hand_computation():
    # diffs 1..5: mean 3, sd sqrt(2.5), t(4) = 2.776: half-width 2.776 * 1.5811 / sqrt(5)
    found = st.paired([1.0, 2.0, 3.0, 4.0, 5.0])
    assert found['n'] == 5 and found['wins'] == 5 and found['mean'] == pytest.approx(3.0)
    assert found['ci95'] == pytest.approx((3 - 1.96292, 3 + 1.96292), abs=1e-4)
    assert st.paired([-1.0, 2.0])['wins'] == 1
    assert st.paired([0.5])['ci95'] is None
    assert st.t95(4) == 2.776 and st.t95(11) == 2.228  # between entries: the lower df


def test_rows_compare_each_seed_with_s1_of_the_same_seed():
    study = st.Study('c.py', 'w', [1, 2], [0, 1, 2])
    done = {}
    for run in study.runs():  # S=1: 20, 10, 30; S=2 always 5 points higher
        base = {0: 20.0, 1: 10.0, 2: 30.0}[run.seed]
        ap = base + (5.0 if run.num_members == 2 else 0.0)
        done[run] = _result({'coco/bbox_mAP': ap / 100}, run.seed, run.num_members)
    done = dict(reversed(list(done.items())))  # finished in another order
    rows = st.summarise(study, done, {}, {}, 'coco/bbox_mAP')
    s1, s2 = rows
    assert s1['seeds'] == [0, 1, 2] and s1['ensemble_runs'] == pytest.approx([20, 10, 30])
    assert s1['vs_s1'] is None
    vs = s2['vs_s1']
    assert vs['seeds'] == [0, 1, 2] and vs['diffs'] == pytest.approx([5, 5, 5])
    assert vs['mean'] == pytest.approx(5) and vs['ci95'] == pytest.approx((5, 5))
    assert vs['wins'] == 3
    assert '+5.0 [+5.0, +5.0], 3/3' in st.markdown(study, rows, 'coco/bbox_mAP', 6)

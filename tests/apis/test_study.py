"""divdet.apis.study: which runs a study makes and how it summarises them."""
import os
import os.path as osp

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


def test_a_resumed_run_is_flagged_and_left_out_of_the_minutes(tmp_path, monkeypatch):
    """A run that continues from a killed run's checkpoint times only its rest: its
    minutes must not enter the "min per run" mean as if it were a whole run."""
    study = st.Study('c.py', str(tmp_path), [1], [0, 1, 2])
    runs = study.runs()
    monkeypatch.setattr(st, 'train_and_test', lambda *a: ('w/epoch_1.pth',
                                                          {'coco/bbox_mAP': 0.2}))
    monkeypatch.setattr(st, 'code_version', lambda root: 'abc')
    first = st.execute(study, runs[0], '.')
    killed = study.run_dir(runs[1])
    os.makedirs(killed)
    open(osp.join(killed, 'last_checkpoint'), 'w').write('epoch_1.pth')
    second = st.execute(study, runs[1], '.')
    assert 'resumed' not in first and second['resumed'] is True
    done = {runs[0]: _result({'coco/bbox_mAP': 0.2}, 0, 1, minutes=8.0),
            runs[1]: dict(_result({'coco/bbox_mAP': 0.2}, 1, 1, minutes=0.3), resumed=True),
            runs[2]: _result({'coco/bbox_mAP': 0.2}, 2, 1, minutes=10.0)}
    (row, ) = st.summarise(study, done, {}, {}, 'coco/bbox_mAP')
    assert row['minutes'][0] == pytest.approx(9.0) and row['resumed'] == 1
    md = st.markdown(study, [row], 'coco/bbox_mAP', 3)
    assert 'leaves out 1 run(s)' in md and '9.0 +- 1.4' in md


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


# ---- tuning --------------------------------------------------------------------------------

CONFIG = 'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_hardshapes.py'
LR = 'optim_wrapper.optimizer.lr'


def _tuned_study(tmp_path):
    from divdet.datasets import make_shapes_dataset
    make_shapes_dataset(tmp_path / 'data', num_train=20, num_val=5, size=48)
    options = [f'{loader}.dataset.data_root={tmp_path}/data/'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    return st.Study(CONFIG, str(tmp_path / 'study'), [1, 2], [3, 4], {}, options,
                    tune=st.parse_tune(f'{LR}=0.02,0.04,0.08'))


class FakeTrainer:
    """Stands for train.py + test.py: a known held-out score per (S, learning rate)."""

    SCORES = {(1, '0.02'): 0.30, (1, '0.04'): 0.50, (1, '0.08'): 0.40,
              (2, '0.02'): 0.45, (2, '0.04'): 0.44, (2, '0.08'): 0.20}

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = [], fail_after

    def __call__(self, study, work, options, root, label):
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise KeyboardInterrupt  # the study is killed
        self.calls.append(options)
        found = dict(o.split('=', 1) for o in options)
        score = self.SCORES[(int(found['model.num_members']), found[LR])]
        return f'{work}/epoch_1.pth', {'coco/bbox_mAP': score}


def test_tuning_picks_the_best_held_out_value_per_row(tmp_path, monkeypatch):
    import json
    study = _tuned_study(tmp_path)
    fake = FakeTrainer()
    monkeypatch.setattr(st, 'train_and_test', fake)
    split = st.tuning_split(study)
    for variant, s in study.rows():
        st.choose(study, variant, s, st.tune_row(study, variant, s, '.', split))
    assert study.chosen == {('default', 1): '0.04', ('default', 2): '0.02'}
    assert len(fake.calls) == 6
    # the seeds then run with their row's value
    run = study.runs()[0]
    assert f'{LR}=0.04' in study.overrides(run) and run.num_members == 1
    # selection never reads the validation split: val/test loaders and evaluators point
    # at the held-out fifth of the training images
    train = json.loads((tmp_path / 'data/annotations/instances_train.json').read_text())
    fit, held = (json.loads(open(split[k]).read()) for k in ('fit', 'holdout'))
    assert len(held['images']) == 4 and len(fit['images']) == 16
    assert {i['id'] for i in fit['images']} | {i['id'] for i in held['images']} == \
        {i['id'] for i in train['images']}
    assert not {i['id'] for i in fit['images']} & {i['id'] for i in held['images']}
    assert all(a['image_id'] in {i['id'] for i in held['images']} for a in held['annotations'])
    for options in fake.calls:
        text = ' '.join(options)
        assert 'instances_val' not in text and 'val/' not in text
        found = dict(o.split('=', 1) for o in options)
        for key in ('val_dataloader.dataset.ann_file', 'test_dataloader.dataset.ann_file',
                    'val_evaluator.ann_file', 'test_evaluator.ann_file'):
            assert found[key] == split['holdout']
        assert found['test_dataloader.dataset.data_prefix.img'] == 'train/'
        assert found['train_dataloader.dataset.ann_file'] == split['fit']
        assert found['randomness.seed'] == '3'  # the first seed
    # the result files name no folder of this machine: paths relative to the work dir
    import glob
    written = [open(f).read() for f in glob.glob(f'{study.work_dir}/tune/**/*.json',
                                                  recursive=True)
               if 'instances_' not in f]
    work = str((tmp_path / 'study').resolve())
    assert len(written) == 7 and not any(work in text for text in written)
    assert 'ann_file=tune/instances_fit.json' in ' '.join(written)


def test_tuning_resumes_after_a_kill(tmp_path, monkeypatch):
    study = _tuned_study(tmp_path)
    split = st.tuning_split(study)
    killed = FakeTrainer(fail_after=2)
    monkeypatch.setattr(st, 'train_and_test', killed)
    with pytest.raises(KeyboardInterrupt):
        st.tune_row(study, 'default', 1, '.', split)
    # the killed value had written a checkpoint: its run continues from it
    killed_dir = study.tune_dir('default', 1, '0.08')
    os.makedirs(killed_dir, exist_ok=True)
    open(osp.join(killed_dir, 'last_checkpoint'), 'w').write('epoch_1.pth')
    again = FakeTrainer()
    monkeypatch.setattr(st, 'train_and_test', again)
    results = st.tune_row(study, 'default', 1, '.', split)
    assert [dict(o.split('=', 1) for o in c)[LR] for c in again.calls] == ['0.08']
    # its minutes time only the rest of the run: flagged, as seeded runs are
    assert results['0.08']['resumed'] is True
    assert not any('resumed' in results[v] for v in ('0.02', '0.04'))
    assert st.choose(study, 'default', 1, results) == '0.04'
    summary = st.tuning_summary(study, {('default', 1): results})
    assert summary['default_s1']['scores'] == {'0.02': 30.0, '0.04': 50.0, '0.08': 40.0}
    assert summary['default_s1']['chosen'] == '0.04'


@pytest.mark.parametrize('text', ['lr', 'lr=0.1', 'lr=0.1,0.1', '=0.1,0.2'])
def test_bad_tune_option(text):
    with pytest.raises(ConfigError, match='--tune expects KEY=V1,V2'):
        st.parse_tune(text)


def test_width_variants_run_at_s1_only():
    study = st.Study('c.py', 'w', [1, 2], [0], {'widen1.5': ['model.backbone.widen=1.5']},
                     variant_splits={'widen1.5': [1]})
    assert study.rows() == [('default', 1), ('default', 2), ('widen1.5', 1)]


def test_plot_draws_s_in_order_and_the_width_curve_along_its_axis(monkeypatch):
    """Against S every variant is one line in S order; against parameters and latency
    only the S=1 width curve is a line (sorted along the axis), the divided rows points."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.axes import Axes
    calls = []
    real = Axes.errorbar

    def spy(self, x, y, *args, **kwargs):
        calls.append((self.get_subplotspec().colspan.start, list(x), kwargs))
        return real(self, x, y, *args, **kwargs)
    monkeypatch.setattr(Axes, 'errorbar', spy)

    def row(variant, s, params, latency, ap):
        return dict(variant=variant, num_members=s, params_m=params, latency_ms=latency,
                    ensemble=(ap, 1.0))
    rows = [row('default', 4, 10.9, 30.0, 24.0), row('default', 1, 11.2, 20.0, 20.0),
            row('widen1.5', 1, 25.0, 35.0, 22.0), row('default', 2, 10.6, 25.0, 23.0),
            row('widen1.25', 1, 17.4, 27.0, 21.0)]
    assert st.plot(rows, 'coco/bbox_mAP')[:4] == b'\x89PNG'
    by_s = [(x, kw) for panel, x, kw in calls if panel == 0]
    assert [x for x, _ in by_s if len(x) == 3] == [[1, 2, 4]]  # default: S=1, 2, 4 in order
    params = [(x, kw) for panel, x, kw in calls if panel == 1]
    assert params[0][0] == [11.2, 17.4, 25.0]  # S=1 at widths 1, 1.25, 1.5, sorted
    assert params[0][1].get('linestyle') != 'none'
    assert params[1][0] == [10.9, 10.6] and params[1][1]['linestyle'] == 'none'
    latency = [x for panel, x, kw in calls if panel == 2]
    assert latency[0] == [20.0, 27.0, 35.0]
    # a variant keeps its colour in every panel; the S=1 width curve is black
    default = by_s[[len(x) for x, _ in by_s].index(3)][1]['color']
    assert params[1][1]['color'] == default and params[0][1]['color'] == 'k'
    assert len({kw['color'] for _, kw in by_s}) == len(by_s)


def test_results_record_the_code_they_ran(tmp_path):
    """Every result.json names the commit it trained with (+changes when the checkout
    had uncommitted changes), so runs of different code are not mixed unknowingly."""
    import re

    from tests.conftest import ROOT
    version = st.code_version(str(ROOT))
    if (ROOT / '.git').exists():
        assert re.fullmatch(r'[0-9a-f]{12}(\+changes)?', version or ''), version
    assert st.code_version(str(tmp_path)) is None  # not a checkout


def test_a_diverged_tuning_value_is_recorded_and_never_chosen(tmp_path, monkeypatch):
    """A learning rate whose training loss turns NaN is a tuning result (not chosen, kept
    on resume), not the end of the study; if every value diverges the study says so."""
    study = _tuned_study(tmp_path)
    split = st.tuning_split(study)

    class Diverging(FakeTrainer):
        def __call__(self, study, work, options, root, label):
            found = dict(o.split('=', 1) for o in options)
            if found[LR] == '0.04':  # the best held-out score, had it trained
                self.calls.append(options)
                raise st.DivergedError('`python tools/train.py ...` exited with status 2 '
                                       '(log x): divdet: error: the training loss is nan')
            return super().__call__(study, work, options, root, label)

    monkeypatch.setattr(st, 'train_and_test', Diverging())
    results = st.tune_row(study, 'default', 1, '.', split)
    assert results['0.04']['score'] is None and 'loss is nan' in results['0.04']['diverged']
    assert st.choose(study, 'default', 1, results) == '0.08'  # the best of the others
    again = FakeTrainer()
    monkeypatch.setattr(st, 'train_and_test', again)
    assert st.tune_row(study, 'default', 1, '.', split)['0.04']['score'] is None
    assert again.calls == []  # the diverged value is not trained again
    every = {v: dict(score=None) for v in ('0.02', '0.04', '0.08')}
    with pytest.raises(ConfigError, match='every value of .* diverged for default S=1'):
        st.choose(study, 'default', 1, every)


def test_a_nan_loss_is_told_apart_from_other_failures(tmp_path):
    log = str(tmp_path / 'run.log')
    nan = ['-c', "print('divdet: error: the training loss is nan at iteration 3'); "
                 'raise SystemExit(2)']
    with pytest.raises(st.DivergedError):
        st._tool(nan, log, str(tmp_path))
    other = ['-c', "print('divdet: error: no such file'); raise SystemExit(2)"]
    with pytest.raises(ConfigError) as info:
        st._tool(other, log, str(tmp_path))
    assert not isinstance(info.value, st.DivergedError)

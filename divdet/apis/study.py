"""A division study: does dividing pay on a given config?

For every (variant, S, seed) the study trains and tests the config exactly as a
user would (``tools/train.py`` then ``tools/test.py``, a normal work directory
each, the seed through ``randomness.seed``), and summarises accuracy against
parameters, FLOPs and latency. ``tools/analysis_tools/division_study.py`` is
its command line.

Layout of a study folder ``DIR``::

    DIR/runs/{variant}_s{S}_seed{seed}/   one work directory per run
        result.json                       written last: the run is finished
    DIR/tune/instances_fit.json,          with ``--tune``: the training split without
        instances_holdout.json            its held-out fifth, and that fifth
    DIR/tune/{variant}_s{S}_{KEY}={V}/    one selection run per (variant, S) and value
    DIR/latency.json                      batch-1 latency per (variant, S)
    DIR/study.json, study.md, study.png   the summary, rewritten after each run

A run whose ``result.json`` exists is not run again, so a killed study resumes
where it stopped. Every file is written atomically; checkpoints are recorded
relative to their run directory, so a study folder can be moved or committed.

**Tuning** (``--tune KEY=V1,V2,...``, e.g. the learning rate): before the seeds,
every (variant, S) trains once per value on the training split without its
held-out fifth (every fifth image in id order) and is tested on that fifth; the
value with the best score is kept for that row's seeds. The validation split,
which the tables report, is never read for the choice. A value whose training
loss turns NaN or infinite is recorded as diverged (``score`` None) and never
chosen; the study goes on with the others.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from divdet.apis.demo import latest_metrics, write_json
from divdet.apis.plot import member_key
from divdet.utils.errors import ConfigError

#: The metric a study reports per toolbox (config ``default_scope``), and the
#: factor to percent (mmdet's COCO AP is a fraction, mmpretrain's top-1 a percent).
METRICS = {'mmdet': 'coco/bbox_mAP', 'mmpretrain': 'accuracy/top1'}
TO_PERCENT = {'coco/bbox_mAP': 100.0, 'accuracy/top1': 1.0}
DEFAULT_VARIANT = 'default'


@dataclass(frozen=True)
class Run:
    """One (variant, S, seed) of a study."""
    variant: str
    num_members: int
    seed: int

    @property
    def name(self) -> str:
        return f'{self.variant}_s{self.num_members}_seed{self.seed}'


@dataclass
class Study:
    """What to run: the config, the splits S, seeds, and named variants.

    ``variants`` maps a name to ``--cfg-options`` items (``KEY=VALUE``); the
    default variant (no overrides) is always included. Variants other than the
    default change how members train together, so they run for S > 1 only.
    """
    config: str
    work_dir: str
    splits: list[int]
    seeds: list[int]
    variants: dict[str, list[str]] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    metric: str = METRICS['mmdet']  #: the metric a finished run's test must report
    #: S per variant for variants that do not follow the default rule (S > 1), e.g.
    #: the width variants of S=1
    variant_splits: dict[str, list[int]] = field(default_factory=dict)
    #: ``(KEY, [V1, V2, ...])`` to tune per (variant, S), or None
    tune: tuple[str, list[str]] | None = None
    #: (variant, S) -> the tuned value its seeds run with (set by :func:`choose`)
    chosen: dict[tuple[str, int], str] = field(default_factory=dict)

    def runs(self) -> list[Run]:
        names = [DEFAULT_VARIANT] + [v for v in self.variants if v != DEFAULT_VARIANT]
        # seed-major: a partly finished study has every (variant, S) at the first seeds
        return [Run(v, s, seed) for seed in self.seeds for v in names
                for s in self.variant_splits.get(v, self.splits)
                if v == DEFAULT_VARIANT or v in self.variant_splits or s > 1]

    def rows(self) -> list[tuple[str, int]]:
        """The (variant, S) pairs, in run order."""
        return list(dict.fromkeys((r.variant, r.num_members) for r in self.runs()))

    def run_dir(self, run: Run) -> str:
        return osp.join(self.work_dir, 'runs', run.name)

    def overrides(self, run: Run, tuned: bool = True) -> list[str]:
        """The run's ``--cfg-options``; with the tuned value of its row if chosen."""
        chosen = self.chosen.get((run.variant, run.num_members)) if tuned else None
        return [f'model.num_members={run.num_members}', f'randomness.seed={run.seed}',
                *self.options, *self.variants.get(run.variant, []),
                *([f'{self.tune[0]}={chosen}'] if chosen is not None else [])]

    def tune_dir(self, variant: str, num_members: int, value: str) -> str:
        safe = str(value).replace(os.sep, '_')
        return osp.join(self.work_dir, 'tune', f'{variant}_s{num_members}_{self.tune[0]}={safe}')


def parse_variants(items: list[list[str]] | None) -> dict[str, list[str]]:
    """``--variant NAME KEY=VALUE ...`` (repeatable) to ``{NAME: [KEY=VALUE, ...]}``.

    Raises:
        ConfigError: a variant without overrides, a name used twice, or an
            override that is not ``KEY=VALUE``.
    """
    variants: dict[str, list[str]] = {}
    for item in items or []:
        name, overrides = item[0], item[1:]
        if name in variants or name == DEFAULT_VARIANT:
            raise ConfigError(f'--variant {name!r}: the name is used twice (or is the name of '
                              'the default variant)')
        bad = [o for o in overrides if '=' not in o]
        if not overrides or bad:
            raise ConfigError(f'--variant {name!r} needs KEY=VALUE overrides, found '
                              f'{overrides or "none"}')
        variants[name] = overrides
    return variants


def _tool(cmd: list[str], log: str, root: str) -> None:
    """Run ``python CMD`` from ``root`` with its output appended to ``log``."""
    with open(log, 'a') as f:
        f.write(f'$ python {" ".join(cmd)}\n')
        f.flush()
        start = f.tell()
        proc = subprocess.run([sys.executable, *cmd], cwd=root, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log, errors='replace') as f:
            f.seek(start)
            tail = [line.rstrip() for line in f.readlines()[-3:]]  # of this command only
        error = DivergedError if any('the training loss is' in line for line in tail) \
            else ConfigError
        raise error(f'`python {" ".join(cmd)}` exited with status {proc.returncode} '
                    f'(log {log}): {" | ".join(tail)}')


class DivergedError(ConfigError):
    """A run stopped on a NaN or infinite training loss (``NonFiniteLossError``)."""


def train_and_test(study: Study, work: str, options: list[str], root: str,
                   label: str) -> tuple[str, dict]:
    """Train in ``work`` (a killed run resumes) and test its last checkpoint.

    Returns:
        The checkpoint's path and the test's metrics.

    Raises:
        ConfigError: a tool failed, or the test reported no ``study.metric``.
    """
    os.makedirs(work, exist_ok=True)
    log = osp.join(work, 'study.log')
    last = osp.join(work, 'last_checkpoint')
    # a run killed mid-training continues; one killed before its first complete checkpoint
    # starts over in its own run directory
    resume = ['--resume'] if osp.isfile(last) else ['--overwrite']
    _tool(['tools/train.py', study.config, '--work-dir', work, *resume,
           '--cfg-options', *options], log, root)
    with open(last) as f:
        checkpoint = f.read().strip()
    test_dir = osp.join(work, 'test')
    _tool(['tools/test.py', study.config, checkpoint, '--work-dir', test_dir,
           '--cfg-options', *options], log, root)
    metrics = latest_metrics(test_dir)
    if study.metric not in metrics:
        raise ConfigError(f'{label}: the test reported no {study.metric!r} (it reported '
                          f"{sorted(metrics)}); check the config's evaluator and test_cfg "
                          f'(log {log})')
    return checkpoint, metrics


def continues_killed_run(work: str) -> bool:
    """Whether the run in ``work`` continues from a killed run's checkpoint: its
    minutes then time only what is left of it (flagged ``resumed`` in its result)."""
    return osp.isfile(osp.join(work, 'last_checkpoint'))


def execute(study: Study, run: Run, root: str) -> dict:
    """Train and test one run as a user would; write and return its ``result.json``."""
    work = study.run_dir(run)
    options = study.overrides(run)
    resumed = continues_killed_run(work)
    start = time.time()
    checkpoint, metrics = train_and_test(
        study, work, options, root, f'{run.variant} S={run.num_members} seed {run.seed}')
    result = dict(variant=run.variant, num_members=run.num_members, seed=run.seed,
                  overrides=options, checkpoint=osp.relpath(checkpoint, work),
                  minutes=round((time.time() - start) / 60, 2), metrics=metrics,
                  code=code_version(root))
    if resumed:
        result['resumed'] = True
    write_json(osp.join(work, 'result.json'), result)
    return result


def code_version(root: str) -> str | None:
    """The git commit of the checkout the runs train with, ``+changes`` if it has
    uncommitted changes to tracked files; None outside a git checkout."""
    import subprocess
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True,
                                text=True, timeout=30)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip()[:12] + ('+changes' if dirty.stdout.strip() else '')


def checkpoint_of(study: Study, run: Run, result: dict) -> str:
    """A run's checkpoint path (recorded relative to its run directory)."""
    return osp.join(study.run_dir(run), result['checkpoint'])


# ---- tuning ------------------------------------------------------------------------------

#: every HOLDOUT_EVERY-th training image (in id order) is held out for tuning
HOLDOUT_EVERY = 5


def parse_tune(text: str | None) -> tuple[str, list[str]] | None:
    """``KEY=V1,V2,...`` to ``(KEY, [V1, V2, ...])``.

    Raises:
        ConfigError: no ``=``, or fewer than two distinct values.
    """
    if text is None:
        return None
    key, sep, values = text.partition('=')
    items = [v.strip() for v in values.split(',') if v.strip()]
    if not sep or not key.strip() or len(set(items)) < 2 or len(set(items)) != len(items):
        raise ConfigError(f'--tune expects KEY=V1,V2,... with at least two distinct values, '
                          f'found {text!r}')
    return key.strip(), items


def tuning_split(study: Study) -> dict[str, str]:
    """Write (once) the training annotation file without its held-out part and the
    held-out part; return their paths and the training images' folder.

    Raises:
        ConfigError: the training dataset has no COCO annotation file.
    """
    from mmengine.config import Config, DictAction

    from divdet.apis.checks import dataset_cfg
    cfg = Config.fromfile(study.config)
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in
                         (o.split('=', 1) for o in study.options)})
    train = dataset_cfg(cfg, 'train_dataloader') or {}
    ann, root = train.get('ann_file'), train.get('data_root') or ''
    if not isinstance(ann, str) or not ann.endswith('.json'):
        raise ConfigError('--tune needs a COCO annotation file (train_dataloader.dataset.'
                          f'ann_file), found {ann!r}')
    source = ann if osp.isabs(ann) else osp.join(root, ann)
    folder = osp.join(study.work_dir, 'tune')
    out = dict(fit=osp.abspath(osp.join(folder, 'instances_fit.json')),
               holdout=osp.abspath(osp.join(folder, 'instances_holdout.json')),
               images=(train.get('data_prefix') or {}).get('img', ''), source=source)
    made = read_json(osp.join(folder, 'split.json'))
    if made == portable(out, study.work_dir) and osp.isfile(out['fit']) and \
            osp.isfile(out['holdout']):
        return out
    with open(source, encoding='utf-8') as f:
        data = json.load(f)
    ids = sorted(img['id'] for img in data['images'])
    held = set(ids[HOLDOUT_EVERY - 1::HOLDOUT_EVERY])
    for name, keep in (('fit', lambda i: i not in held), ('holdout', lambda i: i in held)):
        part = dict(data, images=[img for img in data['images'] if keep(img['id'])],
                    annotations=[a for a in data['annotations'] if keep(a['image_id'])])
        write_json(out[name], part)
    write_json(osp.join(folder, 'split.json'), portable(out, study.work_dir))
    return out


def portable(value, work_dir: str):
    """``value`` (strings in dicts and lists) with the study's absolute work dir left
    out: paths under it relative to it, so that committed result files name no
    folder of the machine they ran on."""
    prefix = osp.abspath(work_dir) + osp.sep
    if isinstance(value, str):
        return value.replace(prefix, '')
    if isinstance(value, dict):
        return {k: portable(v, work_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, work_dir) for v in value]
    return value


def tuning_options(study: Study, split: dict) -> list[str]:
    """Train on the fit part, validate and test on the held-out part (training images)."""
    images = split['images']
    return [f'train_dataloader.dataset.ann_file={split["fit"]}',
            *[f'{loader}.dataset.{key}' for loader in ('val_dataloader', 'test_dataloader')
              for key in (f'ann_file={split["holdout"]}', f'data_prefix.img={images}')],
            f'val_evaluator.ann_file={split["holdout"]}',
            f'test_evaluator.ann_file={split["holdout"]}']


def tune_row(study: Study, variant: str, num_members: int, root: str,
             split: dict, train: bool = True) -> dict[str, dict]:
    """Train every value of ``study.tune`` once for (variant, S) (first seed), test on the
    held-out part; skip values that already have a ``result.json``. Returns value -> result
    (without ``train``: only the finished ones)."""
    key, values = study.tune
    results = {}
    for value in values:
        work = study.tune_dir(variant, num_members, value)
        path = osp.join(work, 'result.json')
        result = read_json(path) if osp.isfile(path) else None
        if not isinstance(result, dict) or 'score' not in result:  # (None: diverged)
            if not train:
                continue
            run = Run(variant, num_members, study.seeds[0])
            options = study.overrides(run, tuned=False) + [f'{key}={value}'] + \
                tuning_options(study, split)
            resumed = continues_killed_run(work)
            start = time.time()
            result = dict(variant=variant, num_members=num_members, seed=run.seed, key=key,
                          value=value, overrides=portable(options, study.work_dir))
            if resumed:
                result['resumed'] = True
            try:
                checkpoint, metrics = train_and_test(
                    study, work, options, root, f'tuning {variant} S={num_members} {key}={value}')
            except DivergedError as e:  # a value that diverges is a result: not chosen
                result.update(minutes=round((time.time() - start) / 60, 2), score=None,
                              diverged=portable(str(e).rsplit('): ', 1)[-1], study.work_dir),
                              code=code_version(root))
                write_json(path, result)
                print(f'study: tuning {variant} S={num_members}: {key}={value} diverged '
                      f'({result["diverged"]})', flush=True)
                results[value] = result
                continue
            result.update(checkpoint=osp.relpath(checkpoint, work),
                          minutes=round((time.time() - start) / 60, 2), metrics=metrics,
                          score=TO_PERCENT.get(study.metric, 1.0) * metrics[study.metric],
                          code=code_version(root))
            write_json(path, result)
            print(f'study: tuning {variant} S={num_members}: {key}={value} scored '
                  f'{result["score"]:.1f} on the held-out part', flush=True)
        results[value] = result
    return results


def choose(study: Study, variant: str, num_members: int, results: dict[str, dict]) -> str:
    """Keep the value with the best held-out score (the first listed on a tie; values
    whose training diverged are never chosen).

    Raises:
        ConfigError: every value diverged.
    """
    values = [v for v in study.tune[1] if results[v].get('score') is not None]
    if not values:
        raise ConfigError(f'--tune: every value of {study.tune[0]} diverged for {variant} '
                          f'S={num_members} ({", ".join(study.tune[1])}); try smaller values')
    best = max(values, key=lambda v: (results[v]['score'], -study.tune[1].index(v)))
    study.chosen[(variant, num_members)] = best
    return best


def tuning_summary(study: Study, tuned: dict) -> dict:
    """For ``study.json``: per row, the key, every value's held-out score and the choice."""
    return {f'{v}_s{s}': dict(key=study.tune[0], chosen=study.chosen.get((v, s)),
                              scores={val: r['score'] for val, r in results.items()},
                              runs=list(results.values()))
            for (v, s), results in tuned.items()}


def finished(study: Study) -> dict[Run, dict]:
    """The runs whose ``result.json`` exists and holds the study's metric, with their results.

    A result file that cannot be read (truncated, not JSON) or lacks the metric
    is reported in one line and its run counts as not finished: it is run again
    (resuming from its last checkpoint).
    """
    done = {}
    for run in study.runs():
        path = osp.join(study.run_dir(run), 'result.json')
        if not osp.isfile(path):
            continue
        result = read_json(path)
        if not isinstance(result, dict) or study.metric not in (result.get('metrics') or {}):
            print(f'study: {path} is incomplete (no {study.metric!r}); the run is done again',
                  flush=True)
            continue
        made_with = result.get('overrides')
        if made_with is not None and made_with != study.overrides(run):
            raise ConfigError(f'{path} was made with --cfg-options {made_with}, this study runs '
                              f'{run.name} with {study.overrides(run)}; use another --work-dir '
                              'for another study')
        done[run] = result
    return done


def read_latency(path: str) -> dict[str, float]:
    """The measured latencies (``latency.json``): {} if there are none, or if the file
    is truncated or malformed (then one line says so and they are measured again)."""
    if not osp.isfile(path):
        return {}
    latency = read_json(path)
    if not isinstance(latency, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in latency.values()):
        print(f'study: {path} is incomplete; the latency is measured again', flush=True)
        return {}
    return latency


def read_json(path: str, default=None):
    """A JSON file's content, or ``default`` if it cannot be read or parsed."""
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _mean_std(values: list[float]) -> tuple:
    """(mean, sample std); None where undefined (no values; std of one value)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


#: two-sided 95% quantiles of Student's t by degrees of freedom (a df between two
#: entries takes the lower one: a wider, conservative interval)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    return T95[max(k for k in T95 if k <= df)]


def paired(diffs: list[float]) -> dict:
    """Mean of per-seed differences with its 95% t interval and the number of wins.

    Args:
        diffs: one difference per seed (e.g. S=2 minus S=1 on the same seed).

    Returns:
        dict(n, mean, ci95=(low, high) or None for fewer than 2 seeds, wins: how many
        differences are > 0).
    """
    n = len(diffs)
    if not n:
        return dict(n=0, mean=None, ci95=None, wins=0)
    mean = statistics.fmean(diffs)
    ci = None
    if n > 1:
        half = t95(n - 1) * statistics.stdev(diffs) / n ** 0.5
        ci = (mean - half, mean + half)
    return dict(n=n, mean=mean, ci95=ci, wins=sum(d > 0 for d in diffs))


def summarise(study: Study, done: dict[Run, dict], cost: dict, latency: dict,
              metric: str) -> list[dict]:
    """One row per (variant, S): cost and accuracy as mean and std over seeds.

    Accuracy is in percent: the ensemble, the best member of each run, the mean
    of each run's members, and the ensemble of the first k members where the
    metric reports it (``ens{k}_`` keys).
    """
    rows = []
    scale = TO_PERCENT.get(metric, 1.0)
    order = list(dict.fromkeys(r.variant for r in study.runs()))
    keys = sorted(study.rows(), key=lambda k: (order.index(k[0]), k[1]))
    for variant, s in keys:
        results = sorted((res for run, res in done.items()
                          if (run.variant, run.num_members) == (variant, s)),
                         key=lambda res: res['seed'])
        ens, best, mean = [], [], []
        for res in results:
            m = res['metrics']
            ens.append(scale * m[metric])
            members = [scale * m[member_key(metric, i)] for i in range(s)
                       if member_key(metric, i) in m]
            if members:
                best.append(max(members))
                mean.append(statistics.fmean(members))
        name = f'{variant}_s{s}'
        rows.append(dict(
            variant=variant, num_members=s, seeds=sorted(r['seed'] for r in results),
            params_m=cost.get(name, {}).get('params_m'), gflops=cost.get(name, {}).get('gflops'),
            latency_ms=latency.get(name), ensemble=_mean_std(ens), best_member=_mean_std(best),
            mean_member=_mean_std(mean), ensemble_runs=ens, best_member_runs=best,
            minutes=_mean_std([r['minutes'] for r in results if not r.get('resumed')]),
            resumed=sum(bool(r.get('resumed')) for r in results),
            tuned=study.chosen.get((variant, s))))
    _add_paired(rows)
    return rows


def _add_paired(rows: list[dict]) -> None:
    """Per row: the per-seed difference of its ensemble to the default S=1 run of the
    same seed (``vs_s1``: seeds, diffs, mean, 95% interval, wins)."""
    base = next((r for r in rows if r['variant'] == DEFAULT_VARIANT and r['num_members'] == 1),
                None)
    for row in rows:
        if base is None or row is base:
            row['vs_s1'] = None
            continue
        by_seed = dict(zip(base['seeds'], base['ensemble_runs']))
        seeds = [seed for seed in row['seeds'] if seed in by_seed]
        diffs = [value - by_seed[seed] for seed, value in zip(row['seeds'], row['ensemble_runs'])
                 if seed in by_seed]
        row['vs_s1'] = dict(paired(diffs), seeds=seeds, diffs=diffs)


def _fmt(pair, digits: int = 1) -> str:
    mean, std = pair
    if mean is None:
        return '-'
    if std is None:
        return f'{mean:.{digits}f} (one run)'
    return f'{mean:.{digits}f} +- {std:.{digits}f}'


def _fmt_paired(vs: dict | None) -> str:
    if not vs or not vs['n']:
        return '-'
    interval = '' if vs['ci95'] is None else f" [{vs['ci95'][0]:+.1f}, {vs['ci95'][1]:+.1f}]"
    return f"{vs['mean']:+.1f}{interval}, {vs['wins']}/{vs['n']}"


def markdown(study: Study, rows: list[dict], metric: str, total: int) -> str:
    """The study's table (``study.md``)."""
    done = sum(len(r['seeds']) for r in rows)
    tuned_header = f' {study.tune[0]} (tuned) |' if study.tune else ''
    lines = [f'# Division study of `{study.config}`', '',
             f'{done} of {total} runs finished; seeds {study.seeds}; accuracy: `{metric}` in %, '
             'mean +- std over the finished seeds; latency: batch 1, trained weights, '
             'median, `model.test_step` on validation images, every (variant, S) in its own '
             'process, interleaved.', '',
             f'| variant | S |{tuned_header} params (M) | GFLOPs | latency (ms) | ensemble | '
             'best member | mean member | vs S=1, same seed | seeds | min per run |',
             '|---|---|' + '---|' * (9 + bool(study.tune))]
    for r in rows:
        def num(v, d=2):
            return '-' if v is None else f'{v:.{d}f}'
        tuned = f" {r.get('tuned') or '-'} |" if study.tune else ''
        lines.append(f"| {r['variant']} | {r['num_members']} |{tuned} {num(r['params_m'])} | "
                     f"{num(r['gflops'])} | {num(r['latency_ms'], 1)} | {_fmt(r['ensemble'])} | "
                     f"{_fmt(r['best_member'])} | {_fmt(r['mean_member'])} | "
                     f"{_fmt_paired(r.get('vs_s1'))} | {len(r['seeds'])} | "
                     f"{_fmt(r['minutes'])} |")
    if study.tune:
        lines += ['', f'`{study.tune[0]}` tuned per row among {study.tune[1]}: each value '
                  f'trained once (seed {study.seeds[0]}) on the training split without every '
                  f'{HOLDOUT_EVERY}th image, scored on those images; the validation split '
                  'above is not used for the choice (scores in study.json, `tuning`).']
    resumed = sum(r.get('resumed', 0) for r in rows)
    if resumed:
        lines += ['', f'"min per run" leaves out {resumed} run(s) that continued from a killed '
                  "run's checkpoint: their minutes time only the part after the restart."]
    lines += ['', '"vs S=1, same seed": the mean over seeds of (this row\'s ensemble minus the '
              'default S=1 run of the same seed), its 95% t interval, and on how many seeds '
              'this row was ahead.']
    overrides = {v: o for v, o in study.variants.items()}
    if overrides:
        lines += ['', 'Variants: ' + '; '.join(f'`{v}`: `{" ".join(o)}`'
                                               for v, o in overrides.items())]
    return '\n'.join(lines) + '\n'


def plot(rows: list[dict], metric: str) -> bytes:
    """The ensemble's accuracy against S, parameters and latency (PNG).

    Against S: one line per variant in S order, each point labelled with its
    parameters. Against parameters and latency: S=1 at several widths (the default
    and the ``--widths`` rows) is one curve, the paper's "wider network" line, sorted
    along the axis; the divided rows are labelled points, not joined (their
    parameters are about equal, so a line would run back and forth). A variant has
    one colour in all three panels; the S=1 curve is black.
    """
    import io

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    def drawn(r, key):
        return r.get(key) is not None and r['ensemble'][0] is not None

    def tag(r):
        width = '' if r['variant'] == DEFAULT_VARIANT else f" {r['variant']}"
        return f"S={r['num_members']}{width}"

    def errorbar(ax, pts, key, **kwargs):
        ax.errorbar([r[key] for r in pts], [r['ensemble'][0] for r in pts],
                    yerr=[r['ensemble'][1] or 0.0 for r in pts], capsize=3, **kwargs)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    colours = {v: f'C{i % 10}' for i, v in enumerate(dict.fromkeys(r['variant'] for r in rows))}
    for variant in colours:
        pts = sorted((r for r in rows if r['variant'] == variant and drawn(r, 'num_members')),
                     key=lambda r: r['num_members'])
        if not pts:
            continue
        errorbar(ax, pts, 'num_members', marker='o', label=variant, color=colours[variant])
        for r in pts:
            params = '' if r.get('params_m') is None else f"{r['params_m']:.2f} M"
            ax.annotate(params, (r['num_members'], r['ensemble'][0]),
                        textcoords='offset points', xytext=(4, 4), fontsize=8)
    splits = sorted({r['num_members'] for r in rows})
    ax.set_xscale('log', base=2)
    ax.set_xticks(splits, [str(s) for s in splits])
    ax.minorticks_off()
    ax.set_xlabel('members S (parameters on the points)')
    for ax, (key, label) in zip(axes[1:], (('params_m', 'parameters (M)'),
                                           ('latency_ms', 'latency, batch 1 (ms)'))):
        widths = sorted((r for r in rows if r['num_members'] == 1 and drawn(r, key)),
                        key=lambda r: r[key])
        if widths:
            errorbar(ax, widths, key, marker='o', color='k',
                     label='S=1' + (', wider' if len(widths) > 1 else ''))
        divided = [r for r in rows if r['num_members'] > 1 and drawn(r, key)]
        for variant in dict.fromkeys(r['variant'] for r in divided):
            pts = [r for r in divided if r['variant'] == variant]
            errorbar(ax, pts, key, marker='s', linestyle='none', label=f'{variant}, S>1',
                     color=colours[variant])
        for r in widths + divided:
            ax.annotate(tag(r), (r[key], r['ensemble'][0]), textcoords='offset points',
                        xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:  # no latency measured yet: no legend
            ax.legend(fontsize=8)
        ax.set_ylabel(f'{metric} (%), ensemble')
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=110)
    plt.close(fig)
    return buf.getvalue()


def config_cost(study: Study, variant: str, num_members: int) -> dict:
    """Parameters (M) and GFLOPs of one (variant, S) at the config's input size
    (its ``input_size`` if it sets one, else divdet's default shape)."""
    from mmengine.config import Config, DictAction

    from divdet.apis.complexity import config_complexity
    cfg = Config.fromfile(study.config)
    run = Run(variant, num_members, 0)
    overrides = {}
    for item in study.overrides(run):
        key, value = item.split('=', 1)
        overrides[key] = DictAction._parse_iterable(value)
    cfg.merge_from_dict(overrides)
    size = cfg.get('input_size')
    shape = (size, size) if isinstance(size, int) else None
    cost = config_complexity(cfg, study.config, shape)
    return dict(params_m=cost['total']['params'] / 1e6, gflops=cost['total']['flops'] / 1e9,
                shape=list(cost['shape']))


def latency_worker(run_dir: str, calls: int) -> float:
    """Median ms of ``model.test_step`` at batch 1 on the run's validation images,
    with its trained weights (the run's dumped config and checkpoint)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, load_checkpoint

    from divdet.apis.plot import run_config
    with open(osp.join(run_dir, 'result.json')) as f:
        checkpoint = osp.join(run_dir, json.load(f)['checkpoint'])
    cfg = Config.fromfile(run_config(run_dir))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    loader_cfg = dict(cfg.test_dataloader, batch_size=1, num_workers=0, persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg)
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    model.eval()
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == min(calls, 16):
            break
    times = []
    with torch.no_grad():
        for i in range(calls + 3):
            batch = batches[i % len(batches)]
            start = time.perf_counter()
            model.test_step(batch)
            if i >= 3:  # warm-up
                times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def measure_latency(study: Study, done: dict[Run, dict], root: str, tool: str,
                    rounds: int = 3, calls: int = 20) -> dict[str, float]:
    """Batch-1 latency of every (variant, S) with a finished run: one process per
    (variant, S) and round, the rounds interleaved; the median over rounds.
    Measured with the checkpoint of the lowest finished seed that still has one."""
    pick: dict[str, Run] = {}
    names = {f'{run.variant}_s{run.num_members}' for run in done}
    for run in sorted(done, key=lambda r: r.seed):
        if osp.isfile(checkpoint_of(study, run, done[run])):
            pick.setdefault(f'{run.variant}_s{run.num_members}', run)
    for name in sorted(names - set(pick)):  # e.g. results copied without checkpoints
        print(f'study: no checkpoint of {name} is left; its latency is not measured',
              flush=True)
    samples: dict[str, list[float]] = {name: [] for name in pick}
    for _ in range(rounds):
        for name, run in pick.items():
            out = subprocess.run([sys.executable, tool, '--latency-of', study.run_dir(run),
                                  '--calls', str(calls)], cwd=root, capture_output=True,
                                 text=True)
            if out.returncode != 0:
                raise ConfigError(f'latency of {name} failed: {out.stderr.strip()[-500:]}')
            samples[name].append(float(out.stdout.strip().splitlines()[-1]))
    return {name: statistics.median(v) for name, v in samples.items()}

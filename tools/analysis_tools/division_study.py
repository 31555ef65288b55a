"""Does dividing pay? Train and test a config for several S, seeds and variants.

Usage:
    python tools/analysis_tools/division_study.py CONFIG --splits 1 2 4 --seeds 0 1 2
        [--variant NAME KEY=VALUE ...] [--cfg-options KEY=VALUE ...] --work-dir DIR
        [--tune KEY=V1,V2,...] [--widths 1.25 1.5 [--width-splits 1]]
        [--latency-rounds 3] [--skip-latency] [--summary-only]

For every (variant, S, seed) it runs ``tools/train.py`` and ``tools/test.py`` as
a user would (``model.num_members=S randomness.seed=SEED`` plus the variant's
overrides; variants other than ``default`` run for S > 1 only), skips runs that
already finished (a killed study resumes where it stopped), prints one line per
finished run with the time left, and writes DIR/study.json, DIR/study.md and
DIR/study.png (see ``divdet.apis.study``) with, per row, the per-seed difference
to S=1 (mean, 95% interval, seeds won). ``--tune`` chooses a value per (variant,
S) on a held-out fifth of the training split first; ``--widths`` adds S=1 rows with
a widened backbone. Detection configs report COCO box AP, classification configs
top-1. Example:

    python tools/analysis_tools/division_study.py \\
        configs/demo/ssd128_divided-resnet18-d_1xb16-24e_hardshapes.py \\
        --splits 1 2 4 --seeds 0 1 2 --variant no-cot model.bbox_head.loss_cot=None \\
        --work-dir work_dirs/study_hardshapes
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from divdet.apis import run_main  # noqa: E402
from divdet.apis.cli import SEED, ArgumentParser, integer, number  # noqa: E402
from divdet.utils.errors import MissingFileError  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?')
    parser.add_argument('--splits', type=integer(1), nargs='+', default=[1, 2])
    parser.add_argument('--seeds', type=SEED, nargs='+', default=[0, 1, 2])
    parser.add_argument('--variant', nargs='+', action='append', metavar='NAME KEY=VALUE',
                        help='a named variant: its config overrides (repeatable)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='overrides for every run (e.g. train_cfg.max_epochs=12)')
    parser.add_argument('--tune', metavar='KEY=V1,V2,...',
                        help='tune KEY per (variant, S) on a held-out fifth of the training '
                        'split before the seeds (e.g. optim_wrapper.optimizer.lr=0.02,0.04,0.08)')
    parser.add_argument('--widths', type=number('(0, inf)'), nargs='+', default=[],
                        help='also run S=1 (see --width-splits) with the backbone widened by '
                        'each factor (model.backbone.widen): the width curve')
    parser.add_argument('--width-splits', type=integer(1), nargs='+', default=[1],
                        help='the S of the --widths variants (default: 1)')
    parser.add_argument('--work-dir')
    parser.add_argument('--latency-rounds', type=integer(1), default=3)
    parser.add_argument('--latency-calls', type=integer(1), default=20)
    parser.add_argument('--skip-latency', action='store_true')
    parser.add_argument('--summary-only', action='store_true',
                        help='rewrite study.json/md/png from the finished runs; run nothing')
    parser.add_argument('--latency-of', help=argparse.SUPPRESS)  # worker: one measurement
    parser.add_argument('--calls', type=integer(1), default=20, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from divdet.apis import study as st
    if args.latency_of:
        print(f'{st.latency_worker(args.latency_of, args.calls):.3f}')
        return
    if not args.config or not args.work_dir:
        raise MissingFileError('a study needs CONFIG and --work-dir')
    if not osp.isfile(args.config):
        raise MissingFileError(f'config file {args.config!r} does not exist')

    from divdet.apis.runner import read_config
    from divdet.utils.files import check_output_dir
    check_output_dir(args.work_dir, '--work-dir')
    scope = read_config(args.config).get('default_scope', 'mmdet')
    metric = st.METRICS[scope]
    variants = st.parse_variants(args.variant)
    widths = {f'widen{w:g}': [f'model.backbone.widen={w:g}'] for w in args.widths}
    study = st.Study(args.config, args.work_dir, args.splits, args.seeds,
                     {**variants, **widths}, list(args.cfg_options), metric=metric,
                     variant_splits={name: list(args.width_splits) for name in widths},
                     tune=st.parse_tune(args.tune))
    runs = study.runs()
    tuned = {}
    if study.tune:
        split = st.tuning_split(study)
        for variant, s in study.rows():
            tuned[(variant, s)] = st.tune_row(study, variant, s, ROOT, split,
                                              train=not args.summary_only)
            if len(tuned[(variant, s)]) == len(study.tune[1]):
                best = st.choose(study, variant, s, tuned[(variant, s)])
                print(f'study: {variant} S={s} runs with {study.tune[0]}={best}', flush=True)
        if len(study.chosen) < len(study.rows()):  # --summary-only before tuning finished
            runs = [r for r in runs if (r.variant, r.num_members) in study.chosen]
    done = st.finished(study)
    print(f'study: {len(runs)} runs, {len(done)} already finished, in {args.work_dir}', flush=True)
    cost = {}
    for variant, s in study.rows():
        cost[f'{variant}_s{s}'] = st.config_cost(study, variant, s)

    def write(latency: dict) -> None:
        rows = st.summarise(study, done, cost, latency, metric)
        st.write_json(osp.join(args.work_dir, 'study.json'), dict(
            config=args.config, metric=metric, splits=args.splits, seeds=args.seeds,
            variants=study.variants, options=study.options, cost=cost, latency_ms=latency,
            rows=rows, runs=[done[r] for r in runs if r in done],
            tuning=st.tuning_summary(study, tuned) if study.tune else None))
        from divdet.utils.files import write_output
        write_output(st.markdown(study, rows, metric, len(runs)).encode(),
                     osp.join(args.work_dir, 'study.md'), 'the study summary')
        write_output(st.plot(rows, metric), osp.join(args.work_dir, 'study.png'),
                     'the study plot')

    latency_file = osp.join(args.work_dir, 'latency.json')
    latency = st.read_latency(latency_file)
    spent = []
    for run in runs:
        if run in done or args.summary_only:
            continue
        done[run] = st.execute(study, run, ROOT)
        minutes = done[run]['minutes']
        if not done[run].get('resumed'):  # a resumed run timed only its rest
            spent.append(minutes)
        left = sum(r not in done for r in runs)
        eta = f', about {left * sum(spent) / len(spent):.0f} min' if spent and left else ''
        value = st.TO_PERCENT[metric] * done[run]['metrics'][metric]
        print(f'study: {run.name} finished in {minutes:.1f} min, ensemble '
              f"{metric} {value:.1f}; {left} run{'' if left == 1 else 's'} left{eta}", flush=True)
        write(latency)
    measured = {f'{r.variant}_s{r.num_members}' for r in done}
    if not (args.skip_latency or args.summary_only) and set(latency) != measured:
        print('study: measuring batch-1 latency (one process per variant and S)', flush=True)
        latency = {**latency, **st.measure_latency(study, done, ROOT, osp.abspath(__file__),
                                                   args.latency_rounds, args.latency_calls)}
        st.write_json(latency_file, latency)
    write(latency)
    print(f'study: wrote {args.work_dir}/study.json, study.md, study.png', flush=True)
    with open(osp.join(args.work_dir, 'study.md')) as f:
        print(f.read())


if __name__ == '__main__':
    run_main(main)

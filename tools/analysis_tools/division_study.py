"""Does dividing pay? Train and test a config for several S, seeds and variants.

Usage:
    python tools/analysis_tools/division_study.py CONFIG --splits 1 2 4 --seeds 0 1 2
        [--variant NAME KEY=VALUE ...] [--cfg-options KEY=VALUE ...] --work-dir DIR
        [--latency-rounds 3] [--skip-latency] [--summary-only]

For every (variant, S, seed) it runs ``tools/train.py`` and ``tools/test.py`` as
a user would (``model.num_members=S randomness.seed=SEED`` plus the variant's
overrides; variants other than ``default`` run for S > 1 only), skips runs that
already finished (a killed study resumes where it stopped), prints one line per
finished run with the time left, and writes DIR/study.json, DIR/study.md and
DIR/study.png (see ``divdet.apis.study``). Detection configs report COCO box AP,
classification configs top-1. Example:

    python tools/analysis_tools/division_study.py \\
        configs/demo/ssd128_divided-resnet18-d_1xb16-24e_hardshapes.py \\
        --splits 1 2 4 --seeds 0 1 2 --variant no-cot model.bbox_head.loss_cot=None \\
        --work-dir work_dirs/study_hardshapes
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from divdet.apis import run_main  # noqa: E402
from divdet.apis.cli import SEED, ArgumentParser, integer  # noqa: E402
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
    study = st.Study(args.config, args.work_dir, args.splits, args.seeds,
                     st.parse_variants(args.variant), list(args.cfg_options), metric=metric)
    runs = study.runs()
    done = st.finished(study)
    print(f'study: {len(runs)} runs, {len(done)} already finished, in {args.work_dir}', flush=True)
    cost = {}
    for variant, s in dict.fromkeys((r.variant, r.num_members) for r in runs):
        cost[f'{variant}_s{s}'] = st.config_cost(study, variant, s)

    def write(latency: dict) -> None:
        rows = st.summarise(study, done, cost, latency, metric)
        st.write_json(osp.join(args.work_dir, 'study.json'), dict(
            config=args.config, metric=metric, splits=args.splits, seeds=args.seeds,
            variants=study.variants, options=study.options, cost=cost, latency_ms=latency,
            rows=rows, runs=[done[r] for r in runs if r in done]))
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
        start = time.time()
        done[run] = st.execute(study, run, ROOT)
        spent.append(time.time() - start)
        left = sum(r not in done for r in runs)
        eta = left * sum(spent) / len(spent) / 60
        value = st.TO_PERCENT[metric] * done[run]['metrics'][metric]
        print(f'study: {run.name} finished in {spent[-1] / 60:.1f} min, ensemble '
              f'{metric} {value:.1f}; {left} runs left, about {eta:.0f} min', flush=True)
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

"""Train a divdet (or any mmdet / mmpretrain) config with mmengine's Runner.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--overwrite] [--partial-load]
        [--cfg-options k=v ...] [--launcher pytorch]

Detection configs (``default_scope = 'mmdet'``) and classification configs
(``default_scope = 'mmpretrain'``) are both served; the config decides.
"""
import argparse

from divdet.apis import (
    ArgumentParser,
    add_common_args,
    apply_train_args,
    build_runner,
    load_config,
    parse_cli,
    run_main,
)


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description='Train a divdet model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic mixed precision (needs a CUDA device)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or, given without a path, from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--overwrite', action='store_true',
        help='start over in a work directory that holds checkpoints of an earlier run '
        '(they are overwritten); without it such a run is refused')
    parser.add_argument(
        '--partial-load', action='store_true',
        help='fine-tuning: load_from a checkpoint whose neck or head differ; the tensors '
        'that do not fit stay initialised (listed in a warning). Without it, test, resume '
        'and load_from refuse any tensor missing, unexpected or of another shape')
    add_common_args(parser)
    return parse_cli(parser)


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args)
    apply_train_args(cfg, args)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    run_main(main)

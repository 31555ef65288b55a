"""tools/train.py trains, stops, and resumes with --resume where it stopped."""
import torch

from divdet.utils import load_from_local_safe

CONFIG = 'tests/fixtures/tiny_regression_config.py'


def test_resume_continues_from_saved_iteration(tool, tmp_path):
    straight, split = tmp_path / 'straight', tmp_path / 'split'
    tool('tools/train.py', CONFIG, '--work-dir', str(straight))
    crashed = tool('tools/train.py', CONFIG, '--work-dir', str(split), check=False,
                   env={'TINY_EXIT_AT': '4'})
    assert crashed.returncode == 3, crashed.stderr[-2000:]
    stopped = load_from_local_safe(str(split / 'iter_4.pth'))
    assert stopped['meta']['iter'] == 4
    assert not (split / 'iter_8.pth').exists()

    proc = tool('tools/train.py', CONFIG, '--work-dir', str(split), '--resume')
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 4' in log
    resumed = load_from_local_safe(str(split / 'iter_8.pth'))
    reference = load_from_local_safe(str(straight / 'iter_8.pth'))
    assert resumed['meta']['iter'] == 8
    # Same data order, same optimizer state and LR schedule: the resumed run
    # ends where the uninterrupted one does.
    for key, value in reference['state_dict'].items():
        torch.testing.assert_close(resumed['state_dict'][key], value, rtol=1e-5, atol=1e-6)
    ref_state = reference['optimizer']['state']
    res_state = resumed['optimizer']['state']
    assert ref_state.keys() == res_state.keys() and ref_state
    for k in ref_state:
        torch.testing.assert_close(res_state[k]['momentum_buffer'], ref_state[k]['momentum_buffer'],
                                   rtol=1e-5, atol=1e-6)
    # The MultiStepLR milestone at iteration 5 was applied after resuming.
    assert resumed['param_schedulers'][0]['_global_step'] == 8
    assert resumed['optimizer']['param_groups'][0]['lr'] == 0.001


def test_resume_with_explicit_checkpoint_and_optimizer_state(tool, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner

    tool('tools/train.py', CONFIG, '--work-dir', str(tmp_path), check=False,
         env={'TINY_EXIT_AT': '4'})
    saved = load_from_local_safe(str(tmp_path / 'iter_4.pth'))
    cfg = Config.fromfile(str(__import__('pathlib').Path(__file__).parents[1] / 'fixtures' /
                              'tiny_regression_config.py'))
    cfg.work_dir = str(tmp_path / 'inproc')
    cfg.resume = True
    cfg.load_from = str(tmp_path / 'iter_4.pth')
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    assert runner.iter == 4
    state = runner.optim_wrapper.optimizer.state_dict()['state']
    for k, v in saved['optimizer']['state'].items():
        torch.testing.assert_close(state[k]['momentum_buffer'], v['momentum_buffer'])

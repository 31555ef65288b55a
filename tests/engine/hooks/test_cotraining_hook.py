"""The co-training weight follows the reference schedule and survives resume."""
from types import SimpleNamespace

import pytest
import torch.nn as nn
from mmengine.logging import MessageHub

from divdet.engine.hooks import CoTrainingHook
from divdet.models.losses import CoTrainingLoss


def _runner(epoch: int, it: int = 0):
    model = nn.Sequential(nn.Linear(2, 2), CoTrainingLoss(loss_weight=0.5))
    return SimpleNamespace(model=model, epoch=epoch, iter=it,
                           train_dataloader=SimpleNamespace(dataset=None),
                           message_hub=MessageHub.get_instance('cot-hook-test'))


@pytest.mark.parametrize('epoch,expected', [(0, 0.005), (1, 0.0125), (20, 0.25), (39, 0.4875),
                                            (40, 0.5), (100, 0.5)])
def test_epoch_schedule(epoch, expected):
    runner = _runner(epoch)
    CoTrainingHook(warmup=40).before_train_epoch(runner)
    assert runner.model[1].weight.item() == pytest.approx(expected)
    assert runner.message_hub.get_scalar('train/cot_weight').current() == pytest.approx(expected)


def test_resume_sets_weight_before_first_epoch():
    runner = _runner(epoch=30)  # a run resumed at epoch 30
    CoTrainingHook(warmup=40).before_train(runner)
    assert runner.model[1].weight.item() == pytest.approx(0.375)


def test_iteration_schedule():
    runner = _runner(epoch=0, it=50)
    hook = CoTrainingHook(warmup=100, by_epoch=False)
    hook.before_train_epoch(runner)
    assert runner.model[1].weight.item() == 0.5  # untouched by the epoch callback
    hook.before_train_iter(runner, 0)
    assert runner.model[1].weight.item() == pytest.approx(0.25)

"""DividedAccuracy: top-k of the ensemble and of each member, side by side."""
import pytest
import torch

from divdet.evaluation import DividedAccuracy


def test_ensemble_and_member_accuracy():
    metric = DividedAccuracy(topk=(1, 2))
    samples = []
    for label in range(4):
        good = torch.nn.functional.one_hot(torch.tensor(label), 4).float()
        bad = torch.nn.functional.one_hot(torch.tensor((label + 1) % 4), 4).float()
        member_scores = torch.stack([good, bad if label < 2 else good])
        samples.append(dict(gt_label=torch.tensor([label]), pred_score=good,
                            pred_label=torch.tensor([label]),
                            member_pred_scores=member_scores))
    metric.process({}, samples)
    res = metric.evaluate(4)
    assert res['accuracy/top1'] == pytest.approx(100.0)
    assert res['accuracy/member0_top1'] == pytest.approx(100.0)
    assert res['accuracy/member1_top1'] == pytest.approx(50.0)
    assert 'accuracy/member1_top2' in res

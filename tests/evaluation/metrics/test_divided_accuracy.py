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


def test_first_k_member_ensembles_from_the_head():
    """S=4 head: first_k_pred_scores[k - 2] combines members 0..k-1; the metric's ens{k}
    keys equal the accuracy of those scores computed directly."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    from divdet.models.heads.divided_cls_head import combine_logits
    torch.manual_seed(0)
    head = MODELS.build(dict(type='DividedClsHead', num_members=4, in_channels=8,
                             head=dict(type='LinearClsHead', num_classes=5)))
    feats = [(torch.randn(40, 8), ) for _ in range(4)]
    labels = torch.randint(0, 5, (40, ))
    samples = head.predict(feats, [DataSample().set_gt_label(int(y)) for y in labels])
    logits = head.member_logits(feats)
    metric = DividedAccuracy(topk=(1, ))
    metric.process({}, [s.to_dict() for s in samples])
    res = metric.evaluate(40)
    for k in (2, 3):
        expected = combine_logits(logits[:k], head.ensemble)
        torch.testing.assert_close(torch.stack([s.first_k_pred_scores[k - 2] for s in samples]),
                                   expected.detach())
        direct = 100 * float((expected.argmax(-1) == labels).float().mean())
        assert res[f'accuracy/ens{k}_top1'] == pytest.approx(direct)
    assert 'accuracy/ens4_top1' not in res and 'accuracy/member3_top1' in res

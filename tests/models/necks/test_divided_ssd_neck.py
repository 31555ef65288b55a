"""DividedSSDNeck: member widths divided by S, one SSDNeck per member."""
import pytest
import torch

from divdet.models import DividedSSDNeck


@pytest.mark.parametrize('num_members,extra', [(1, (512, 256)), (2, (256, 128)), (4, (128, 64))])
def test_member_widths(num_members, extra):
    neck = DividedSSDNeck(num_members, in_channels=(64, ), out_channels=(1024, 512, 256),
                          level_strides=(2, 2), level_paddings=(1, 1), l2_norm_scale=None)
    assert neck.member_out_channels == (64, *extra)
    x = tuple((torch.randn(1, 64, 8, 8), ) for _ in range(num_members))
    outs = neck(x)
    assert len(outs) == num_members
    assert [o.shape[1] for o in outs[0]] == [64, *extra]
    assert [o.shape[-1] for o in outs[0]] == [8, 4, 2]
    with pytest.raises(ValueError, match='expected features of'):
        neck(x + x)

# efficientnet-b7 divided into S=1 member(s) on ImageNet-1k at 600 px; the S=2 config's
# pipelines and recipe.
_base_ = './efficientnet-b7-s2_8xb32-120e_in1k.py'

model = dict(num_members=1)

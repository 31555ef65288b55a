"""tools/train.py and tools/test.py on a classification config: per-member views
through the real dataloader, and ensemble + member accuracy in the metrics file."""
import glob
import json
import pickle

import pytest

from divdet.datasets import make_digits_dataset

CONFIG = 'configs/demo/resnet110-cifar_divided_1xb64-15e_digits.py'


@pytest.mark.parametrize('num_members', [1, 2])
def test_train_then_test(tool, tmp_path, num_members):
    make_digits_dataset(tmp_path / 'digits', size=16)
    work = tmp_path / 'work'
    options = ['--cfg-options', f'model.num_members={num_members}',
               f'train_dataloader.dataset.data_root={tmp_path}/digits',
               f'val_dataloader.dataset.data_root={tmp_path}/digits',
               f'test_dataloader.dataset.data_root={tmp_path}/digits',
               'train_dataloader.dataset.indices=64', 'val_dataloader.dataset.indices=40',
               'test_dataloader.dataset.indices=40', 'train_dataloader.batch_size=16']
    tool('tools/train.py', CONFIG, '--work-dir', str(work), *options, 'train_cfg.max_epochs=1',
         'train_cfg.val_interval=1')
    checkpoint = (work / 'last_checkpoint').read_text().strip()
    out = tmp_path / 'preds.pkl'
    tool('tools/test.py', CONFIG, checkpoint, '--work-dir', str(work), '--out', str(out),
         *options)
    files = sorted(glob.glob(str(work / '*' / '*.json')))
    metrics = json.loads(open(files[-1]).read().strip().splitlines()[-1])
    # the reported top-1 is the share of saved predictions whose best class is the label
    preds = pickle.loads(out.read_bytes())
    assert len(preds) == 40
    correct = [int(p['pred_score'].argmax()) == int(p['gt_label'][0]) for p in preds]
    assert metrics['accuracy/top1'] == pytest.approx(100 * sum(correct) / len(correct), abs=1e-3)
    members = [k for k in metrics if k.startswith('accuracy/member')]
    assert len(members) == (num_members if num_members > 1 else 0)

import sys

import torch
from basicsr import train as basicsr_train
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

from xfusion.basicsr_compat import load_resume_state


def test_importing_xfusion_registers_every_name():
    assert 'EDVRSTF' in ARCH_REGISTRY and 'STFModel' in MODEL_REGISTRY
    for name in ['REDSSTFDataset', 'XraySTFDataset', 'STFSequenceTestDataset']:
        assert name in DATASET_REGISTRY
    for name in ['calculate_psnr_stf', 'calculate_ssim_stf', 'calculate_aad']:
        assert name in METRIC_REGISTRY
    assert 'EDVR' in ARCH_REGISTRY  # BasicSR's own names are untouched


def test_basicsr_imports_with_current_torchvision():
    import basicsr.data.degradations  # noqa: F401  (imports torchvision.transforms.functional_tensor)
    assert 'torchvision.transforms.functional_tensor' in sys.modules
    assert basicsr_train.load_resume_state is load_resume_state


def opt_for(tmp_path, auto_resume=True):
    states, models = tmp_path / 'training_states', tmp_path / 'models'
    states.mkdir(exist_ok=True)
    models.mkdir(exist_ok=True)
    return {'auto_resume': auto_resume, 'network_g': {}, 'path': {'training_states': str(states),
                                                                   'models': str(models), 'resume_state': None}}


def save_state(tmp_path, it):
    state = {'iter': it, 'epoch': 0, 'optimizers': [], 'schedulers': []}
    torch.save(state, tmp_path / 'training_states' / f'{it}.state')
    torch.save({'params': {}}, tmp_path / 'models' / f'net_g_{it}.pth')


def test_auto_resume_on_cpu_takes_the_newest_loadable_state(tmp_path, capsys):
    opt = opt_for(tmp_path)
    assert load_resume_state(opt) is None
    save_state(tmp_path, 5)
    save_state(tmp_path, 10)
    (tmp_path / 'training_states' / '15.state').write_bytes(b'cut short by a kill')  # corrupt
    state = load_resume_state(opt)
    assert state['iter'] == 10
    assert opt['path']['resume_state'].endswith('10.state')
    assert opt['path']['pretrain_network_g'].endswith('net_g_10.pth')
    assert 'skipping training state' in capsys.readouterr().out
    # a state whose network file is missing is skipped as well
    (tmp_path / 'models' / 'net_g_10.pth').unlink()
    assert load_resume_state(opt_for(tmp_path))['iter'] == 5

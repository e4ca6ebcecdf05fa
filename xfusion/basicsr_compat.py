"""Every adjustment BasicSR 1.4.2 needs to run here, in one place, one comment per item.

Imported by ``xfusion/__init__.py`` before anything imports basicsr. Nothing else in the
project patches BasicSR.
"""
from __future__ import annotations

import glob
import os
import sys
import types
import warnings


def _provide_functional_tensor() -> None:
    # basicsr/data/degradations.py imports torchvision.transforms.functional_tensor,
    # which torchvision 0.17 removed: provide the one name it uses (rgb_to_grayscale).
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401
    except ImportError:
        from torchvision.transforms import functional
        module = types.ModuleType('torchvision.transforms.functional_tensor')
        module.rgb_to_grayscale = functional.rgb_to_grayscale
        sys.modules['torchvision.transforms.functional_tensor'] = module


def _provide_loose_version() -> None:
    # basicsr/archs/arch_util.py imports distutils.version.LooseVersion; distutils left the
    # standard library in Python 3.12 (PEP 632). Only its >= comparison of versions is used.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            from distutils.version import LooseVersion  # noqa: F401
    except ImportError:
        def as_tuple(version: str) -> tuple:
            return tuple(int(p) if p.isdigit() else p for p in version.split('+')[0].split('.'))

        class LooseVersion(str):
            def __ge__(self, other):
                return as_tuple(self) >= as_tuple(other)

        package = types.ModuleType('distutils')
        version = types.ModuleType('distutils.version')
        version.LooseVersion = LooseVersion
        package.version = version
        sys.modules.setdefault('distutils', package)
        sys.modules['distutils.version'] = version


_provide_functional_tensor()
_provide_loose_version()

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from basicsr import train as basicsr_train  # noqa: E402
from basicsr.models import base_model  # noqa: E402
from basicsr.utils import (  # noqa: E402
    check_resume,
    dist_util,  # noqa: E402
    scandir,
)

TMP_SUFFIX = '.tmp'  # checkpoints are written to <file>.tmp<pid>, then renamed (atomic_torch_save)


def load_resume_state(opt: dict) -> dict | None:
    """basicsr.train.load_resume_state without its CUDA assumptions.

    Upstream maps the state to ``torch.cuda.current_device()`` (fails on CPU) and looks for
    ``experiments/<name>`` relative to the working directory instead of the experiment root.
    Here the state is loaded on the CPU (optimizers move it to their parameters' device), and
    ``--auto_resume`` takes the newest state that loads, skipping a corrupt one with a warning.
    """
    candidates = []
    if opt['auto_resume']:
        state_dir = opt['path']['training_states']
        for folder in (state_dir, opt['path']['models']):  # half-written files of a killed save
            for stale in glob.glob(os.path.join(folder, f'*{TMP_SUFFIX}*')):
                print(f'removing {stale}, left by an interrupted save', flush=True)
                os.remove(stale)
        if os.path.isdir(state_dir):
            names = scandir(state_dir, suffix='.state', recursive=False, full_path=False)
            iters = sorted((int(n[:-len('.state')]) for n in names if n[:-len('.state')].isdigit()), reverse=True)
            candidates = [os.path.join(state_dir, f'{i}.state') for i in iters]
    elif opt['path'].get('resume_state'):
        candidates = [opt['path']['resume_state']]

    for path in candidates:
        try:
            state = torch.load(path, map_location='cpu', weights_only=False)
            models = os.path.join(opt['path']['models'], f"net_g_{state['iter']}.pth")
            if opt['auto_resume'] and not os.path.isfile(models):
                raise FileNotFoundError(f'its network file {models} is missing')
        except Exception as error:  # a state cut short by a kill, or its network file missing
            if not opt['auto_resume']:
                raise
            print(f'WARNING: skipping training state {path}: {error}', flush=True)
            continue
        opt['path']['resume_state'] = path
        check_resume(opt, state['iter'])
        return state
    return None


# basicsr.train.train_pipeline calls the module-level name, so replacing it is enough.
basicsr_train.load_resume_state = load_resume_state


def _init_dist_pytorch(backend: str = 'nccl', **kwargs) -> None:
    # basicsr.utils.dist_util._init_dist_pytorch always selects a CUDA device and NCCL, so
    # `--launcher pytorch` fails on CPU-only machines: use gloo there, and LOCAL_RANK (set by
    # torchrun) rather than RANK to pick the GPU of a multi-node job.
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', os.environ['RANK'])) % torch.cuda.device_count())
    else:
        backend = 'gloo'
    dist.init_process_group(backend=backend, **kwargs)


dist_util._init_dist_pytorch = _init_dist_pytorch

def atomic_torch_save(obj, path: str) -> None:
    """torch.save to a temporary name in the same folder, flushed to disk, then renamed over path."""
    tmp = f'{path}{TMP_SUFFIX}{os.getpid()}'
    try:
        torch.save(obj, tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _TorchSavingAtomically(types.ModuleType):
    """The torch module as basicsr.models.base_model sees it, with an atomic save."""
    save = staticmethod(atomic_torch_save)

    def __getattr__(self, name: str):
        return getattr(torch, name)


# BaseModel.save_network / save_training_state torch.save straight to the final file name, so a
# job killed while saving leaves a truncated checkpoint that --auto_resume then fails on: write
# to a temporary name and rename (atomic on POSIX), so the last good state always stays loadable.
base_model.torch = _TorchSavingAtomically('torch')

# basicsr.models.video_base_model.VideoBaseModel.dist_validation allocates its metric buffers on
# 'cuda'. STFModel validates with its own loop (it reports key and non-key frames apart), so that
# path is never taken and is left as it is.

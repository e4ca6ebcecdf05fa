"""STFModel: training and validation of spatiotemporal fusion networks in BasicSR's loops."""
from __future__ import annotations

import csv
import os
from collections import OrderedDict, defaultdict
from os import path as osp

import numpy as np
import torch
from basicsr.metrics import calculate_metric
from basicsr.models.edvr_model import EDVRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info, master_only
from basicsr.utils.registry import MODEL_REGISTRY
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from xfusion.inference import SequenceInference
from xfusion.io.frames import write_frame
from xfusion.options import save_effective_options

DEFAULT_PIXEL_LOSS = {'type': 'CharbonnierLoss', 'loss_weight': 1.0, 'reduction': 'mean'}


@MODEL_REGISTRY.register()
class STFModel(EDVRModel):
    """Feeds ``lq`` (B,T,C,h,w), ``hq`` (B,K,C,H,W), ``key_weights`` (B,K) and ``gt`` (B,C,H,W) to a window
    network (``SegmentSTFModel`` trains the segment networks).

    Keeps EDVRModel's ``dcn_lr_mul`` (DCN parameters at a multiple of the learning rate) and
    ``tsa_iter`` (only the fusion module trains for the first tsa_iter iterations), and takes BasicVSR's
    ``flow_lr_mul`` (the network's flow estimator, its ``flow`` module, at a multiple). The pixel
    loss is ``train.pixel_opt`` (Charbonnier when absent). Validation runs on the model's
    device (CPU or GPU), reports each metric over non-key frames (the headline) and key frames
    apart, writes output frames in the data's own bit depth when ``save_img`` is set, and a
    per-frame ``metrics.csv`` when testing.
    """

    def __init__(self, opt: dict):
        if opt['is_train'] and opt['dist'] and opt['train'].get('tsa_iter'):
            # parameters frozen for the TSA phase get no gradient, which DDP reports as an error
            # ("Expected to have finished reduction") unless it looks for unused parameters
            opt['find_unused_parameters'] = True
        super().__init__(opt)

    def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
        # BaseModel.model_to_device gives DistributedDataParallel device_ids=[torch.cuda.current_device()],
        # which fails without CUDA: on CPU (gloo), DDP takes no device_ids
        if self.opt['dist'] and self.device.type == 'cpu':
            return DistributedDataParallel(net.to(self.device),
                                           find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return super().model_to_device(net)

    def setup_optimizers(self) -> None:
        """One Adam over every parameter, in one group per learning-rate multiple: ``dcn_lr_mul`` (EDVR's
        DCN parameters), ``flow_lr_mul`` (BasicVSR's: the ``flow`` module) and ``lr_mul``, a mapping from
        the names of the network's modules to multiples (``{blend: 10}``); 0 holds those
        parameters at their initial values (a flow that starts at the classical global motion keeps it)."""
        train_opt = self.opt['train']
        lr = train_opt['optim_g']['lr']
        dcn_mul = train_opt.get('dcn_lr_mul', 1)
        module_muls = {'flow': train_opt.get('flow_lr_mul', 1), **(train_opt.get('lr_mul') or {})}
        bare = self.get_bare_model(self.net_g)
        mul_of = {}  # id(param) -> multiple
        for module_name, mul in module_muls.items():
            module = getattr(bare, module_name, None)
            if not isinstance(module, torch.nn.Module):
                if mul != 1:
                    option = 'flow_lr_mul' if module_name == 'flow' else f'lr_mul.{module_name}'
                    raise ValueError(f"train.{option} is {mul}, but {self.opt['network_g']['type']} "
                                     f'has no {module_name} module')
                continue
            mul_of.update({id(p): mul for p in module.parameters()})
        groups = defaultdict(list)
        for name, param in self.net_g.named_parameters():
            groups[mul_of.get(id(param), dcn_mul if 'dcn' in name else 1)].append(param)
        shown = ', '.join(f'{name} {mul}' for name, mul in {'dcn': dcn_mul, **module_muls}.items())
        get_root_logger().info(f'Learning rate multiples: {shown}.')
        optim_params = [{'params': params, 'lr': lr * mul} for mul, params in
                        sorted(groups.items(), key=lambda group: group[0] != 1)]  # the plain ones first
        optim_opt = dict(train_opt['optim_g'])
        optim_type = optim_opt.pop('type')
        self.optimizer_g = self.get_optimizer(optim_type, optim_params, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def init_training_settings(self):
        train_opt = self.opt['train']
        if not train_opt.get('pixel_opt') and not train_opt.get('perceptual_opt'):
            train_opt['pixel_opt'] = dict(DEFAULT_PIXEL_LOSS)
        super().init_training_settings()

    def feed_data(self, data: dict) -> None:
        self.lq = data['lq'].to(self.device)
        hq = data.get('hq')
        self.hq = hq.to(self.device) if hq is not None and hq.numel() else None
        weights = data.get('key_weights')
        self.key_weights = weights.to(self.device) if weights is not None else None
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)

    def _set_tsa_only(self, tsa_only: bool) -> None:
        for name, param in self.net_g.named_parameters():
            param.requires_grad = (not tsa_only) or ('fusion' in name)

    def optimize_parameters(self, current_iter: int) -> None:
        # BasicSR's tsa_iter, decided from the iteration itself so that a resumed run is right too
        if self.train_tsa_iter:
            tsa_only = current_iter < self.train_tsa_iter
            if getattr(self, '_tsa_only', None) != tsa_only:
                get_root_logger().info('Train only the TSA fusion module.' if tsa_only else 'Train all parameters.')
                self._set_tsa_only(tsa_only)
                self._tsa_only = tsa_only

        self.optimizer_g.zero_grad()
        self.output, loss_dict = self.forward_for_loss()
        l_total = sum(loss_dict.values())
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, self.gt)
            l_total += l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            for key, value in (('l_percep', l_percep), ('l_style', l_style)):
                if value is not None:
                    l_total += value
                    loss_dict[key] = value
        l_total.backward()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def forward_for_loss(self) -> tuple[torch.Tensor, OrderedDict]:
        """The output the pixel loss compares with ``self.gt``, and any losses of the network's own."""
        return self.net_g(self.lq, self.hq, self.key_weights), OrderedDict()

    def save(self, epoch: int, current_iter: int) -> None:
        """BasicSR's checkpoints, and beside them the options this run used (see save_effective_options)."""
        super().save(epoch, current_iter)
        self._save_effective_options()

    @master_only
    def _save_effective_options(self) -> None:
        save_effective_options(self.opt)

    def test(self) -> None:
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        with torch.inference_mode():
            self.output = net(self.lq, self.hq, self.key_weights)
        net.train(was_training)

    # ----------------------------------------------------------------------------------------
    # validation
    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        """Every time step of the validation sequences (an STFSequenceTestDataset).

        Runs cached sequence inference (each frame encoded once; ``val.cached: false`` for the
        per-window forward, ``val.batch`` time steps at a time); each rank takes a contiguous
        share of every sequence and the rows are gathered on rank 0.
        """
        dataset = dataloader.dataset
        dataset_name = dataset.opt['name']
        val_opt = self.opt['val']
        metrics_opt = val_opt.get('metrics') or {}
        rank, world_size = get_dist_info()
        out_dir = osp.join(self.opt['path']['visualization'], dataset_name)
        net = self.get_bare_model(self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g)
        was_training = net.training
        inference = SequenceInference(net, self.device, cached=val_opt.get('cached', True),
                                      batch=val_opt.get('batch', 1), precision=val_opt.get('precision', 'fp32'))

        rows = []
        shares = [np.array_split(np.arange(seq.num_frames), world_size)[rank].tolist() for seq in dataset.sequences]
        pbar = tqdm(total=sum(map(len, shares)), unit='frame', desc=f'Test {dataset_name}',
                    disable=rank != 0 or not val_opt.get('pbar', True))
        for seq, times in zip(dataset.sequences, shares):
            source = dataset.frame_source(seq)
            for t, output in inference.run(source, times):
                result = output[0].clamp(0, 1).numpy()
                row = {'folder': seq.name, 'frame': t, 'is_key': source.schedule.is_key(t)}
                gt = seq.read_hr(t) if t in seq.hr_index else None
                for name, metric_opt in metrics_opt.items():
                    if gt is not None:
                        row[name] = calculate_metric({'img': result, 'img2': gt}, metric_opt)
                rows.append(row)
                if save_img:
                    suffix = f'_{current_iter}' if self.opt['is_train'] else ''
                    write_frame(osp.join(out_dir, seq.name, f'{t:08d}{suffix}.png'), seq.scale.from_unit(result))
                pbar.update(1)
        pbar.close()
        net.train(was_training)

        if self.opt['dist']:
            gathered = [None] * world_size
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if rank != 0 or not metrics_opt:
            return
        rows.sort(key=lambda r: (r['folder'], r['frame']))
        self._report(rows, dataset_name, list(metrics_opt), current_iter, tb_logger)
        if not self.opt['is_train']:
            write_metrics_csv(osp.join(out_dir, 'metrics.csv'), rows)

    def _report(self, rows: list[dict], dataset_name: str, metric_names: list[str], current_iter, tb_logger) -> None:
        self._initialize_best_metric_results(dataset_name)
        summary = summarize(rows, metric_names)
        log = [f'Validation {dataset_name}: mean over non-key frames (key frames apart)']
        for name in metric_names:
            nonkey, key = summary['all'][name]
            self._update_best_metric_result(dataset_name, name, nonkey, current_iter)
            best = self.best_metric_results[dataset_name][name]
            log.append(f'\t # {name}: {nonkey:.4f} (key frames: {key:.4f})'
                       f'\tBest: {best["val"]:.4f} @ {best["iter"]} iter')
            for folder, values in summary['folders'].items():
                log.append(f'\t     {folder}: {values[name][0]:.4f} (key frames: {values[name][1]:.4f})')
            if tb_logger:
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}', nonkey, current_iter)
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}_key', key, current_iter)
        get_root_logger().info('\n'.join(log))
        self.last_validation = summary


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float('nan')


def summarize(rows: list[dict], metric_names: list[str]) -> dict:
    """{'all': {metric: (non-key mean, key mean)}, 'folders': {folder: {metric: (...)}}}."""
    groups = defaultdict(lambda: defaultdict(lambda: ([], [])))
    for row in rows:
        for name in metric_names:
            for scope in ('all', row['folder']):
                groups[scope][name][1 if row['is_key'] else 0].append(row[name])
    as_means = {scope: {name: (_mean(v[0]), _mean(v[1])) for name, v in per.items()} for scope, per in groups.items()}
    return {'all': as_means.pop('all'), 'folders': as_means}


def write_metrics_csv(path: str, rows: list[dict]) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

"""Run one training stage of a bundle through DeepSpeed.

Passes of `train`:
  1. environment: CPU accelerator and single-process rendezvous variables unless a launcher set them;
  2. read train/<stage>/stage.yaml (StageFile) and ds_config.json; DeepSpeed's config decides micro batch,
     gradient accumulation, ZeRO stage and precision;
  3. build the denoiser with the model factory (seeded, so every rank builds the same weights), compile its
     repeated blocks when layout.compile says so, load init_from weights, build teacher / reference models,
     optimizer and LR schedule, deepspeed.initialize;
  4. resume from the newest complete checkpoint in output_dir/checkpoints (weights, optimizer, schedule,
     data position per lane, noise-aware compute, EMA, LADD heads, RNG), then start the DataLoader
     (runtime/train/loader.py) at the next step;
  5. per step: this rank's micro-batches from its own shards (the loader's workers read and build them
     ahead; in a bucketed stage each micro-batch holds one bucket at its own size: runtime/train/buckets.py), one generator per (seed, step, rank, micro-batch), forward / backward / step per micro-batch,
     EMA update from the fp32 masters, noise-aware compute update, metrics (metrics.jsonl and TensorBoard),
     validation every validation_every steps, checkpoint every checkpoint_every steps and at the last step run;
  6. at the stage's last step, final/: the weights (and EMA) as safetensors and as diffusers folders, with the
     stage file, resolved spec, plan row and genspec version beside them (runtime/train/export.py).
Rerunning after a kill continues from the last complete checkpoint and reproduces the uninterrupted run's
per-step losses exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from ruamel.yaml import YAML

from compiler.schema.architecture import ArchitectureSpec, Cascade, UNetStage
from compiler.schema.bundle import StageFile
from compiler.schema.schedule import AdversarialDistillation, GuidanceDistillation, PreferenceLoss, TimestepDistillation
from runtime.objectives import ConditioningDropout, build_objective
from runtime.models.sequence_parallel import (
    SequenceParallelGroups, data_parallel_rank, data_parallel_world_size, enable_sequence_parallel,
)
from runtime.train import checkpoint, export, preemption
from runtime.train.batch import Batch, BatchBuilder, check_task
from runtime.train.buckets import BucketTable, resolution_index, trains_on_buckets
from runtime.train.data import StageData
from runtime.train.device import engine_device, frozen
from runtime.train.ema import EMA
from runtime.train.launch import derived_seed, prepare_environment, step_generator
from runtime.train.loader import Loader, default_workers, to_device
from runtime.train.losses import Denoise, DenoisingLoss, GuidanceDistillationLoss, LaddLoss, PreferenceDPOLoss
from runtime.train.metrics import Metrics, StepTally, planned_compute, unwrapped_grad_norm
from runtime.train.optim import build_lr_schedule, build_optimizer
from runtime.train.protocol import DEFAULT_FACTORY, ModelFactory, check_denoiser, load_factory
from runtime.train.validation import Validator, validation_parts


@dataclass
class RunOptions:
    """Command-line options of `python -m runtime.train`."""

    stage: Path
    ds_config: Path
    run_root: Path = Path(".")
    max_steps: int | None = None
    model_factory: str | ModelFactory = DEFAULT_FACTORY  # 'module:function', or the callable itself
    model_dir: Path | None = None
    data_workers: int | None = None  # DataLoader workers per rank; None: runtime.train.loader.default_workers


def load_stage_file(path: Path) -> StageFile:
    """train/<stage>/stage.yaml, validated against the StageFile contract."""
    with open(path) as stream:
        return StageFile.model_validate(YAML(typ="safe").load(stream))


def embeds_guidance(architecture: ArchitectureSpec) -> bool:
    """Whether the architecture's backbone takes the guidance scale as an input (FLUX.1 dev)."""
    return bool(getattr(architecture.backbone, "guidance_embed", False))


def image_geometry(stage_file: StageFile, latents: torch.Tensor) -> tuple[int, int]:
    """(backbone tokens, pixels per frame) of a batch's latents (B, C, [F,] H, W)."""
    space, backbone = stage_file.architecture.space, stage_file.architecture.backbone
    grid = latents.shape[2:]
    patch = getattr(backbone, "patch_size", (1, 1, 1))[-len(grid) :]
    tokens = math.prod(size // step for size, step in zip(grid, patch))
    compression = space.spatial_compression if space.kind == "latent" else 1
    return tokens, grid[-1] * grid[-2] * compression**2


class Run:
    """One stage's training run on this rank."""

    def __init__(self, options: RunOptions):
        prepare_environment()
        import deepspeed

        self.options = options
        self.stage_file = load_stage_file(options.stage)
        self.stage = self.stage_file.stage
        self.ds_config = json.loads(Path(options.ds_config).read_text())
        self.run_root = Path(options.run_root)
        self.output_dir = self.run_root / self.stage_file.output_dir
        deepspeed.init_distributed()
        self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self.total_steps = self.stage.steps or options.max_steps
        if self.total_steps is None:
            raise ValueError(f"stage {self.stage.name!r}: stage.steps is not set; pass --max-steps")
        self.stop = min(self.total_steps, options.max_steps or self.total_steps)
        self.seed = self.stage_file.seed

        factory = load_factory(options.model_factory)
        factory_name = options.model_factory if isinstance(options.model_factory, str) else factory.__qualname__
        model = self._build_model(factory, factory_name)
        # Ulysses sequence parallelism: each group of sp consecutive ranks shares one sample (its tokens split
        # over the group), so data, noise and validation are drawn per data-parallel rank, not per rank.
        sp = self.stage_file.layout.sp_size
        self.data_rank, self.data_world = data_parallel_rank(self.rank, sp), data_parallel_world_size(self.world, sp)
        mpu = SequenceParallelGroups(sp) if sp > 1 else None
        if mpu is not None:
            enable_sequence_parallel(model, mpu.get_sequence_parallel_group())
        self.engine = self._initialize(deepspeed, model, mpu)
        self.dtype = torch.bfloat16 if self.engine.bfloat16_enabled() else torch.float32
        self.device = engine_device(self.engine)
        self.micro_batch = self.engine.train_micro_batch_size_per_gpu()
        self.accumulation = self.engine.gradient_accumulation_steps()
        self.global_batch = self.engine.train_batch_size()

        self.workers = default_workers() if options.data_workers is None else options.data_workers
        self.buckets = BucketTable(self.stage_file) if trains_on_buckets(self.stage_file) else None
        shortest = min([self.stage.frames, *self.stage.frame_buckets]) if self.stage.frames else None
        self.data = StageData(
            self.stage_file.data, self.run_root, self.seed, self.global_batch, self.data_rank, self.data_world,
            micro_batch=self.micro_batch, clip=(shortest, self.stage.fps) if shortest else None,
            lanes=max(self.workers, 1), buckets=self.buckets,
            resolution_at=partial(resolution_index, count=len(self.stage.resolutions), total_steps=self.total_steps),
        )
        self.loader: Loader | None = None  # started by run(), after resume
        self.compute = planned_compute(options.stage, self.stage.name, self.stage.model)  # for MFU
        self.cascade_stage = self._cascade_stage()
        self.builder = BatchBuilder(
            self.stage_file.architecture,
            self._mask_from(),
            None if self.stage.conditioning == "precomputed" else self._encoder(options),
            lowres_side=self.cascade_stage and self.cascade_stage.input_resolution,
            frames=self.stage.frames,
            fps=self.stage.fps,
            device=self.device,
        )
        self.augment = bool(self.cascade_stage and self.cascade_stage.noise_conditioning_augmentation)
        validation = validation_parts(
            self.data, self.builder, self._size(1), self.micro_batch, self.seed, self.data_rank, self.data_world,
            lowres_level=(self.stage_file.inference.noise_augmentation_level or 0.0) if self.augment else None,
            buckets=self.buckets,
        )
        probe = validation[0].batch
        self.base_objective = self._objective(probe)
        self.loss = self._stage_loss(factory, factory_name, probe)
        self.ema = EMA(self.engine.module, self.stage.ema_decay, self.engine.optimizer) if self.stage.ema_decay else None
        self.student = Denoise(self.engine, self.dtype, embeds_guidance(self.stage_file.architecture))
        self.validator = Validator(
            validation, [d.dataset for d in self.stage_file.data], self.objective_for,
            self.stage_file.validation_timesteps,
        )

    # --- construction ----------------------------------------------------------------------------------
    def _build_model(self, factory, name: str):
        """The trained model: built seeded (every rank alike), then either initialised for training from scratch
        (its init_weights, when it has one) or loaded from init_from: an earlier stage's final weights, or
        released weights from the model directory (runtime/models/released.py)."""
        torch.manual_seed(derived_seed(self.seed))
        model = factory(self.stage_file.architecture, self.stage.model)
        check_denoiser(model, name)
        if self.stage_file.layout.activation_checkpointing:
            if not hasattr(model, "enable_activation_checkpointing"):
                raise TypeError(
                    f"layout.activation_checkpointing is on but {name}'s {type(model).__name__} has no "
                    "enable_activation_checkpointing(); add it or turn checkpointing off in the plan"
                )
            model.enable_activation_checkpointing()
        if self.stage_file.layout.compile:
            if not hasattr(model, "compile_blocks"):
                raise TypeError(
                    f"layout.compile is on but {name}'s {type(model).__name__} has no compile_blocks(); add it or "
                    "turn compile off in the plan"
                )
            model.compile_blocks()  # in place: state-dict keys stay, so init_from and checkpoints load alike
        if self.stage.init_released is not None:  # published weights, mapped and checked key by key
            from runtime.models.released import load_released

            load_released(model, self.stage.init_released, self.options.model_dir,
                          allow_missing=isinstance(self.stage.loss, GuidanceDistillation),
                          field_path=f"schedule.stages[{self.stage.name}].init_from")
            return model
        if not self.stage_file.init_from:
            if hasattr(model, "init_weights"):  # from scratch: the family's own initialisation
                model.init_weights()
            return model
        source = checkpoint.weights_file(self.run_root / self.stage_file.init_from, "init_from", prefer_ema=False)
        fresh = checkpoint.load_weights(
            model, source, "init_from", allow_missing=isinstance(self.stage.loss, GuidanceDistillation)
        )
        if fresh and self.rank == 0:
            print(f"init_from {source}: {len(fresh)} parameters start fresh (not in it): {fresh[:5]}", file=sys.stderr)
        return model

    def _initialize(self, deepspeed, model, mpu=None):
        own_optimizer = "optimizer" not in self.ds_config
        optimizer = (
            build_optimizer(self.stage, [p for p in model.parameters() if p.requires_grad]) if own_optimizer else None
        )
        schedule = None
        if optimizer is not None and "scheduler" not in self.ds_config:
            schedule = build_lr_schedule(self.stage, optimizer, self.total_steps)
        engine, _, _, _ = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=schedule,
            config=self.ds_config,
            model_parameters=None if own_optimizer else [p for p in model.parameters() if p.requires_grad],
            mpu=mpu,
        )
        return engine

    def _frozen(self, factory, name: str, directory: str, field: str):
        """A frozen teacher / reference: its own architecture (final/architecture.json) and weights."""
        weights = checkpoint.weights_file(self.run_root / directory, field, prefer_ema=True)
        saved = weights.parent / checkpoint.ARCHITECTURE
        architecture = (
            ArchitectureSpec.model_validate_json(saved.read_text()) if saved.is_file() else self.stage_file.architecture
        )
        torch.manual_seed(derived_seed(self.seed))
        model = factory(architecture, self.stage.model)
        check_denoiser(model, name)
        checkpoint.load_weights(model, weights, field)
        return Denoise(frozen(model, self.device, self.dtype), self.dtype, embeds_guidance(architecture))

    def _cascade_stage(self) -> UNetStage | None:
        """The cascade U-Net this stage trains (stage.model), None for single-model specs."""
        backbone = self.stage_file.architecture.backbone
        if not isinstance(backbone, Cascade):
            return None
        named = [unet for unet in backbone.stages if unet.name == self.stage.model]
        if not named:
            names = [unet.name for unet in backbone.stages]
            raise ValueError(f"stage.model is {self.stage.model!r}; the cascade's models are {names}")
        return named[0]

    def _mask_from(self) -> str | None:
        masked = self.stage_file.objective.masked_loss
        return None if masked is None else masked.mask_from

    def _encoder(self, options: RunOptions):
        """Builds runtime.encoders' Encoders on the engine's device in the stage's precision; the batch builder
        calls it when a batch first needs on-the-fly encoding (an input whose precomputed member is missing or does
        not fit the stage)."""

        def build():
            from runtime.encoders import build_encoders

            return build_encoders(
                self.stage_file.architecture, self.stage_file.scale, options.model_dir, self.device, self.dtype
            )

        return build

    def _size(self, step: int) -> tuple[int, int]:
        """Pixel size at `step` for on-the-fly encoding: the stage's resolutions split its steps evenly."""
        size = self.stage.resolutions[resolution_index(step, len(self.stage.resolutions), self.total_steps)]
        return size.height, size.width

    def _objective(self, batch: Batch):
        tokens, pixels = image_geometry(self.stage_file, batch.latents)
        return build_objective(
            self.stage_file.objective,
            self.stage,
            tokens,
            pixels=pixels,
            time_scale=float(self.engine.module.time_scale),
        )

    def objective_for(self, batch: Batch):
        """The objective at a batch's resolution (shifts may depend on it); noise-aware state is shared."""
        return self.base_objective.at_resolution(*image_geometry(self.stage_file, batch.latents))

    def _stage_loss(self, factory, name: str, probe: Batch):
        config = self.stage_file.objective.cfg_dropout
        dropout = None if config is None else ConditioningDropout(config, self.stage_file.architecture)
        loss = self.stage.loss
        if loss is None:
            return DenoisingLoss(dropout, augment_lowres=self.augment)
        if isinstance(loss, PreferenceLoss):
            if self.stage_file.teacher:
                reference = self._frozen(factory, name, self.stage_file.teacher, "teacher")
            else:
                model = frozen(self._build_model(factory, name), self.device, self.dtype)
                reference = Denoise(model, self.dtype, embeds_guidance(self.stage_file.architecture))
            return PreferenceDPOLoss(dropout, reference, loss)
        if not self.stage_file.teacher:
            raise ValueError(
                f"stage {self.stage.name!r}: stage.loss is {loss.kind}, which needs a teacher; set teacher"
            )
        teacher = self._frozen(factory, name, self.stage_file.teacher, "teacher")
        if isinstance(loss, GuidanceDistillation):
            return GuidanceDistillationLoss(dropout, teacher, loss)
        if isinstance(loss, (AdversarialDistillation, TimestepDistillation)):
            lr = self.stage.optimizer.lr if self.stage.optimizer else self.ds_config["optimizer"]["params"]["lr"]
            return LaddLoss(dropout, teacher, loss, self.base_objective, probe, lr,
                            checkpoint_teacher=self.stage_file.layout.activation_checkpointing)
        raise TypeError(f"stage.loss: no trainer loss for {type(loss).__name__}; add it to Run._stage_loss")

    # --- state -----------------------------------------------------------------------------------------
    def trainer_state(self) -> dict:
        """What checkpoint.save stores beside DeepSpeed's state."""
        return {
            "data": self.loader.state_dict(),
            "objective": self.base_objective.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "loss": self.loss.state_dict(),
        }

    def resume(self) -> int:
        """Load the last checkpoint if there is one; returns the step it ended."""
        state = checkpoint.load(self.engine, self.output_dir, self.rank)
        if state is None:
            return 0
        self.data.load_state_dict(state["data"])
        self.base_objective.load_state_dict(state["objective"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.loss.load_state_dict(state["loss"])
        return state["step"]

    # --- the loop --------------------------------------------------------------------------------------
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (a copy, on `tensor`'s device; reduced on the engine's, which NCCL needs)."""
        reduced = tensor.to(self.device, copy=True)
        torch.distributed.all_reduce(reduced)
        return reduced.to(tensor.device)

    def train_step(self, step: int) -> dict:
        """One optimizer step; returns its metrics record."""
        started = time.perf_counter()
        lr = self.engine.get_lr()[0]
        losses, per_sample, timesteps = [], [], []
        tally = StepTally(len(self.stage_file.data))
        for micro in range(self.accumulation):
            item = self.loader.next()
            if isinstance(item.batch, list):  # raw samples: this micro-batch encodes on the fly, here
                size, frames = (self._size(step), None) if item.bucket is None else self.buckets.geometry(item.bucket)
                batch = self.builder(item.batch, size, frames)
            else:
                batch = to_device(item.batch, self.device)
            check_task(batch, self.stage_file.data[item.dataset])
            generator = step_generator(self.seed, step, self.data_rank, micro)  # one draw per SP group
            torch.manual_seed(derived_seed(self.seed, step, self.data_rank, micro))
            out = self.loss(self.student, self.objective_for(batch), batch, generator)
            self.engine.backward(out.loss)
            if micro == self.accumulation - 1:
                tally.grad_norm = unwrapped_grad_norm(self.engine)  # before step() clears the gradients
            self.engine.step()
            self.loss.after_step()
            losses.append(out.loss.detach().double())
            tally.add(item.dataset, out.loss, batch.size, image_geometry(self.stage_file, batch.latents)[0])
            per_sample.append(out.per_sample)
            timesteps.append(out.t)
        if self.ema is not None:
            self.ema.update()
        self.base_objective.observe(torch.cat(timesteps), torch.cat(per_sample), self.all_reduce_sum)
        loss = self.all_reduce_sum(torch.stack(losses).mean().reshape(1)) / self.world
        elapsed = time.perf_counter() - started
        record = {"step": step, "loss": loss.item(), "lr": lr, "samples_per_s": self.global_batch / elapsed}
        return record | tally.record(self.all_reduce_sum, [d.dataset for d in self.stage_file.data], elapsed,
                                     self.engine.get_global_grad_norm() or tally.grad_norm, self.compute, self.world)

    def run(self) -> int:
        """Train to the stop step; returns it."""
        start = self.resume()
        self.loader = Loader(self.data, start, self.workers, self.builder, self._size)
        stop_request = preemption.REQUEST
        metrics = Metrics(self.output_dir, self.rank == 0, start, self.stop, self.stage.name)
        if start == 0:
            metrics.log({"step": 0, **self.validate()})
        for step in range(start + 1, self.stop + 1):
            record = self.train_step(step)
            if step % self.stage_file.validation_every == 0:
                record |= self.validate()
            metrics.log(record)
            saved = step % self.stage_file.checkpoint_every == 0 or step == self.stop
            if saved:
                checkpoint.save(self.engine, self.output_dir, step, self.trainer_state(), self.rank)
            if step < self.stop and stop_request.after_step():
                if not saved:
                    checkpoint.save(self.engine, self.output_dir, step, self.trainer_state(), self.rank)
                metrics.close()
                self.loader.close()
                raise preemption.Preempted(step, stop_request.received)
        metrics.close()
        self.loader.close()
        if self.stop == self.total_steps:
            architecture = self.stage_file.architecture.model_dump_json()
            done = {"stage": self.stage.name, "steps": self.total_steps, "stage_sha256": stage_digest(self.options.stage)}
            description = export.describe(self.options.stage, self.stage_file)
            export.export_final(self.engine, self.ema, self.output_dir, self.rank, architecture, done, description)
        return self.stop

    def validate(self) -> dict[str, float]:
        """The validation losses with the current weights."""
        self.engine.eval()
        try:
            return self.validator(self.student)
        finally:
            self.engine.train()


def stage_digest(path: Path) -> str:
    """sha256 of a stage.yaml's bytes: which stage file a final/ export was trained from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def already_trained(stage_path: Path, output_dir: Path) -> int | None:
    """The step a finished stage ended at, when output_dir/final/done.json says this very stage.yaml finished;
    None when it has not finished. A final/ trained from a different stage.yaml is an error."""
    record = checkpoint.finished(output_dir)
    if record is None:
        return None
    digest = stage_digest(stage_path)
    if record.get("stage_sha256") != digest:
        raise ValueError(
            f"{output_dir / checkpoint.FINAL} holds stage {record.get('stage')!r} trained from another stage.yaml "
            f"(sha256 {str(record.get('stage_sha256'))[:12]}..., {stage_path} is {digest[:12]}...); "
            f"delete {output_dir} to train this stage again, or pass another --run-root"
        )
    return int(record["steps"])


def train(options: RunOptions) -> int:
    """Run a training stage; returns the last step trained. A stage that already finished (final/done.json
    written from this stage.yaml) returns at once, without starting DeepSpeed."""
    stage_file = load_stage_file(options.stage)
    output_dir = Path(options.run_root) / stage_file.output_dir
    done = already_trained(options.stage, output_dir)
    if done is not None:
        print(f"stage {stage_file.stage.name}: already trained ({done} steps, {output_dir / checkpoint.FINAL}); "
              "nothing to do", file=sys.stderr)
        return done
    preemption.REQUEST.install()
    return Run(options).run()

"""motion_score with a learned optical-flow network: RAFT (runtime/curation/modelzoo/raft.py, torchvision's
released checkpoints) between consecutive frames sampled at the op's fps, at the analysis size.

The per-step statistics and the summary are motion_score's (runtime/curation/ops/motion.py), so the score
is on the same scale as Farneback's: mean flow magnitude in pixels per sampled step at the analysis size.
Frames are cropped to multiples of 8 (RAFT's stride) before the flow.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from runtime.curation.api import KEEP, Resources, Score, Verdict
from runtime.curation.modelzoo.raft import RAFT_FOLDER, RAFT_VARIANTS, WEIGHT_FILES
from runtime.curation.modelzoo.weights import Limit, ModelBacked, device, model_resources
from runtime.curation.ops.motion import MotionScore, motion_summary, step_statistics
from runtime.curation.records import Record
from runtime.curation.registry import register

PAIRS_PER_FORWARD = 8  # frame pairs per RAFT forward: bounds activation memory on long clips


@register("motion_score", scorer="raft")
class RaftMotionScore(ModelBacked, MotionScore):
    """Mean RAFT flow magnitude over consecutive sampled frames; keeps [min_score, max_score]. MODEL_DIR/raft
    holds torchvision's raft_large or raft_small weights; at smoke scale a random raft_small stands in."""

    stateful = True

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.weights = self.locate("raft", RAFT_FOLDER, (tuple(f for files in WEIGHT_FILES.values() for f in files),))
        self.min_score = Limit(f"{spec.name}.min_score", spec.min_score, "min", self.weights.stand_in)
        self.max_score = Limit(f"{spec.name}.max_score", spec.max_score, "max", self.weights.stand_in)

    def resources(self) -> Resources:
        return model_resources(4.0)

    @cached_property
    def model(self):
        import torch

        from runtime.curation.modelzoo.raft import build_raft, load_raft

        if self.weights.stand_in:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.weights.seed)
                model = build_raft(RAFT_VARIANTS["raft_small"]).eval()
        else:
            model = load_raft(self.weights)
        return model.to(device())

    def scoring_params(self) -> dict:
        return {**super().scoring_params(), "scorer": "raft", "weights": self.weights.fingerprint()}

    def flows(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """RAFT flow [H, W, 2] between each consecutive pair (RGB uint8 frames of one size)."""
        import torch

        h, w = (frames[0].shape[0] // 8) * 8, (frames[0].shape[1] // 8) * 8
        on = next(self.model.parameters()).device
        batch = torch.from_numpy(np.stack([f[:h, :w] for f in frames])).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        out = []
        for start in range(0, len(frames) - 1, PAIRS_PER_FORWARD):
            stop = min(start + PAIRS_PER_FORWARD, len(frames) - 1)
            with torch.inference_mode():
                flow = self.model(batch[start:stop].to(on), batch[start + 1:stop + 1].to(on))
            out.extend(flow.permute(0, 2, 3, 1).float().cpu().numpy())
        return out

    def score(self, records: list[Record]) -> list[Score | None]:
        scores = []
        for record in records:
            frames = record.pixels.frames(self.spec.analysis_short_side_px, self.spec.fps)
            steps = [step_statistics(flow) for flow in self.flows(frames)] if len(frames) > 1 else []
            score = motion_summary(steps)
            if self.weights.stand_in:
                score["stand_in"] = self.weights.model_id
            scores.append(score)
        return scores

    def decide(self, record: Record, score: Score | None) -> Verdict:
        if detail := self.min_score.failure(record.key, score["value"]):
            return Verdict.drop("too little motion", f"mean RAFT flow {detail}")
        if detail := self.max_score.failure(record.key, score["value"]):
            return Verdict.drop("too much motion", f"mean RAFT flow {detail}")
        return KEEP

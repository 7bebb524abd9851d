"""Synthetic media for the curation tests, made once per session: images, videos, webdataset shards.

Every case an op must catch or keep has a named sample: sharp / blurred / dark / clipped / tiny / wide
images, an exact and a near duplicate, a truncated JPEG, non-image bytes, an EXIF-rotated photo;
static, moving-object, panning, shaky, scene-cut, too-short, low-fps and frameless videos; a shard with
a corrupt tar header. `apply_op` runs one op over named samples in this process.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from runtime.curation.api import OpContext
from runtime.curation.records import Fate, Record
from runtime.curation.registry import build
from runtime.curation.runner import BoundOp, plan_color, plan_side

VIDEO_SIZE = (192, 144)  # width, height: short side under 256, so flow is measured at native size
FPS = 24


def texture(seed: int, height: int, width: int, sigma: float = 3.0) -> np.ndarray:
    """Smooth random RGB texture with full contrast: something for optical flow and pHash to lock on to."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigma)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def sharp_image(seed: int, width: int = 512, height: int = 384) -> np.ndarray:
    """Shapes with hard edges over a texture: a high Laplacian variance."""
    rng = np.random.default_rng(seed + 1000)
    image = texture(seed, height, width, sigma=2.0)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + int(rng.integers(20, 120)), y + int(rng.integers(20, 120))), colour, -1)
        else:
            cv2.circle(image, (x, y), int(rng.integers(10, 60)), colour, -1)
    return image


def encode(image: np.ndarray, fmt: str = "JPEG", quality: int = 92, exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    kwargs = {"quality": quality} if fmt == "JPEG" else {}
    if exif is not None:
        kwargs["exif"] = exif
    Image.fromarray(image).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, VIDEO_SIZE)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def video_frames(kind: str, seconds: float = 3.0, fps: float = FPS) -> list[np.ndarray]:
    """Frames of one synthetic video case."""
    width, height = VIDEO_SIZE
    count = round(seconds * fps)
    if kind == "static":
        base = texture(1, height, width)
        return [base] * count
    if kind == "moving_object":
        base, patch = texture(2, height, width), texture(7, 64, 64, sigma=2.0)
        frames = []
        for i in range(count):
            frame = base.copy()
            x = 10 + i
            frame[40:104, x : x + 64] = patch
            frames.append(frame)
        return frames
    if kind == "pan":
        canvas = texture(3, height, width + count)
        return [np.ascontiguousarray(canvas[:, i : i + width]) for i in range(count)]
    if kind == "shaky":
        canvas = texture(4, height + 40, width + 40)
        rng = np.random.default_rng(4)
        frames = []
        for i in range(count):
            dx, dy = (int(v) for v in rng.integers(-12, 13, 2))
            frames.append(np.ascontiguousarray(canvas[20 + dy : 20 + dy + height, 20 + dx : 20 + dx + width]))
        return frames
    if kind == "scene_cut":
        first, second = texture(5, height, width), 255 - texture(6, height, width, sigma=2)[..., ::-1]
        half = count // 2
        return [first] * half + [second] * (count - half)
    raise ValueError(kind)


def shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    """A webdataset shard: (key, {ext: bytes}) in order."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def meta(caption: str = "a photo") -> dict[str, bytes]:
    return {"txt": caption.encode(), "json": json.dumps({"source": "synthetic"}).encode()}


def exif_rotated(image: np.ndarray) -> bytes:
    """JPEG stored landscape with EXIF orientation 6 (rotate 90 degrees): displayed as portrait."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, exif=exif.tobytes())


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, bytes]:
    """Every named test sample's media bytes."""
    scratch = tmp_path_factory.mktemp("media")
    sharp = [sharp_image(i) for i in range(6)]
    samples = {f"sharp{i}": encode(image) for i, image in enumerate(sharp)}
    samples["blurred"] = encode(cv2.GaussianBlur(sharp_image(10), (0, 0), 6))
    samples["dark"] = encode((sharp_image(11) * 0.06).astype(np.uint8))
    samples["clipped"] = encode(np.clip(sharp_image(12).astype(int) + 200, 0, 255).astype(np.uint8))
    samples["tiny"] = encode(sharp_image(13, 64, 48))
    samples["wide"] = encode(sharp_image(14, 1024, 200))
    samples["png"] = encode(sharp_image(15), "PNG")
    samples["rotated"] = exif_rotated(sharp_image(16, 480, 320))
    samples["sharp0_copy"] = samples["sharp0"]  # keys sort after their originals: dedup keeps the original
    small = cv2.resize(sharp[1], (384, 288), interpolation=cv2.INTER_AREA)
    samples["sharp1_resized"] = encode(small, quality=70)
    samples["truncated"] = samples["sharp2"][: len(samples["sharp2"]) // 2]
    samples["not_an_image"] = b"this is a text file, not a JPEG\n" * 20
    for kind in ("static", "moving_object", "pan", "shaky", "scene_cut"):
        samples[f"video_{kind}"] = write_video(scratch / f"{kind}.mp4", video_frames(kind))
    samples["video_short"] = write_video(scratch / "short.mp4", video_frames("moving_object", seconds=0.5))
    samples["video_low_fps"] = write_video(scratch / "low_fps.mp4", video_frames("moving_object", fps=8), fps=8)
    samples["video_no_frames"] = write_video(scratch / "empty.mp4", [])
    return samples


IMAGE_SHARD_0 = ["sharp0", "sharp1", "sharp2", "blurred", "dark", "clipped", "tiny", "wide", "png", "rotated"]
IMAGE_SHARD_1 = ["sharp3", "sharp4", "sharp5", "sharp0_copy", "sharp1_resized", "truncated", "not_an_image"]
VIDEO_SHARD = ["video_static", "video_moving_object", "video_pan", "video_shaky", "video_scene_cut",
               "video_short", "video_low_fps", "video_no_frames"]


def ext_of(name: str) -> str:
    return "mp4" if name.startswith("video_") else "png" if name == "png" else "jpg"


@pytest.fixture(scope="session")
def shards(tmp_path_factory, media) -> Path:
    """images-000.tar, images-001.tar (with cross-shard duplicates and broken files), videos-000.tar."""
    directory = tmp_path_factory.mktemp("shards")
    for name, keys in (("images-000", IMAGE_SHARD_0), ("images-001", IMAGE_SHARD_1), ("videos-000", VIDEO_SHARD)):
        shard(directory / f"{name}.tar", [(key, {ext_of(key): media[key], **meta(f"{key} sample")}) for key in keys])
    return directory


@pytest.fixture(scope="session")
def corrupt_shard(tmp_path_factory, media) -> Path:
    """A shard whose second sample's tar header is damaged (checksum broken)."""
    path = shard(
        tmp_path_factory.mktemp("corrupt") / "corrupt-000.tar",
        [(key, {"jpg": media[key], **meta()}) for key in ("sharp0", "sharp1", "sharp3")],
    )
    data = bytearray(path.read_bytes())
    with tarfile.open(path) as tar:
        second = next(m for m in tar.getmembers() if m.name.startswith("sharp1."))
    data[second.offset : second.offset + 100] = b"\xff" * 100  # the name field and beyond: checksum fails
    path.write_bytes(bytes(data))
    return path


class Outcome:
    """Fates (kind "kept" for survivors) and records of one op applied to named samples."""

    def __init__(self, records: list[Record], survivors: list[Record]) -> None:
        self.records = {r.key: r for r in records + survivors}
        self.fates = {r.key: r.fate or Fate("kept") for r in self.records.values()}

    def kind(self, key: str) -> str:
        return self.fates[key].kind

    def kept(self) -> list[str]:
        return [key for key, fate in self.fates.items() if fate.kind == "kept"]


@pytest.fixture
def apply_op(media):
    """apply_op(op, names) -> Outcome: the op's real implementation over the named samples, no cache."""

    def apply(op, names: list[str], model_dir: Path | None = None) -> Outcome:
        impl = build(op, OpContext(model_dir))
        side, color = plan_side([impl]), plan_color([impl])  # as the runner plans a stage of this one op
        records = [Record(name, media[name], ext_of(name), shard="test", seq=(i,)) for i, name in enumerate(names)]
        for record in records:
            record.attach_decoder(side, color=color)
        ended: list[Record] = []
        survivors = BoundOp(impl, side, color).process(records, None, ended)
        return Outcome(records, survivors)

    return apply


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray of 2 CPUs for the whole session (ray.init costs seconds); every worker registers the
    test model ops of tests/runtime/curation/model_ops.py. Skipped where ray[data] is not installed."""
    ray = pytest.importorskip("ray", reason="ray[data] is not installed: pip install -e '.[ray]'")
    from tests.runtime.curation.model_ops import register

    register()
    # The workers import the hook from this repository: put its root on their path (pytest's importlib mode
    # does not, and without it every worker dies in its setup hook and Ray restarts them forever).
    root = str(Path(__file__).resolve().parents[3])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "tests.runtime.curation.model_ops.register",
                          "env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()

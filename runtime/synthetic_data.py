"""Synthetic raw webdataset shards for every source of a spec, by modality, so curation and training run
without downloads.

    make_raw("demo-run/raw", "wan2.1-t2v-1.3b")  # -> {"videos": [...tar], "images": [...tar]}

Each source gets RAW_DIR/<source>/<source>-NNNNN.tar. Samples are coloured shapes on textured backgrounds;
their size, frame rate and duration are read from the spec (the resolution, duration, scene-split and trim
ops of the pipelines reading the source, and the duration range of the subsets of their outputs), so clean
samples pass those filters. Every twelfth sample at a fixed slot is a case curation must catch:

- image / image_text (KEY.jpg, KEY.txt caption, KEY.json): an exact duplicate, a near-duplicate (re-encoded
  smaller), a tiny image (below the resolution filter), a truncated JPEG, a blurred image.
- video / video_text (KEY.mp4 in mp4v, KEY.txt, KEY.json): an exact duplicate, a clip with a hard scene cut
  (scene_split cuts it in two), a too-short clip (below min_seconds), a clip whose frame data is zeroed (the
  container opens, no frame decodes), a static clip (no motion). Clean clips have shapes moving over a
  slowly panning background.
- image_edit_triplet (KEY.jpg the edited target, KEY.source.jpg the source image, KEY.txt the edit
  instruction, KEY.json): the edit is applied for real: the target is the source scene re-rendered with
  one change (recolour, move, resize, remove a shape, new background colour). The trainer reads these
  member names (runtime/train/batch.py).

Deterministic: the same arguments give identical bytes (seeded generators, tar mtime 0, OpenCV's mp4v
muxer writes no timestamps).
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 170, 70), "yellow": (240, 220, 40),
           "orange": (250, 140, 30), "purple": (140, 50, 180), "white": (245, 245, 245), "black": (15, 15, 15),
           "pink": (250, 150, 190), "teal": (30, 160, 160)}
# Backgrounds are mid-tone so a clean sample's mean luma stays inside exposure filters (e.g. 20-235).
BACKGROUNDS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "teal")
SHAPES = ("circle", "square", "triangle", "star", "ring")
IMAGE_SIDES = (256, 320, 384, 448, 512)
VIDEO_SIDES = (64, 96, 128)
VIDEO_FPS = (8, 12, 16, 24, 25, 30)
# Background grain: +- GRAIN grey levels in square cells, GRAIN_CELLS across the short side (never under a
# pixel), sharp-edged so it survives the downscale to a blur filter's analysis size: clean samples measure
# a Laplacian variance of about 200-1900 at 256 px (blur filters ask for 100), a GaussianBlur(8) copy far less.
GRAIN, GRAIN_CELLS = 18, 128
PAN_PX = 1  # background pan per frame, in pixels: a steady camera move
SLOT_COUNT = 12  # the kinds below repeat every SLOT_COUNT samples
IMAGE_SLOTS = {3: "duplicate", 6: "near_duplicate", 7: "tiny", 9: "corrupt", 11: "blurry"}
VIDEO_SLOTS = {3: "duplicate", 6: "scene_cut", 7: "too_short", 9: "corrupt", 11: "static"}
EDITS = ("recolour", "move", "resize", "remove", "background")


# --- what the spec asks of a source -------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What the curation of one source requires of a clean sample, from the spec."""

    min_side: int = 0  # resolution filter: minimum short side / width / height, px
    min_seconds: float = 0.0  # duration filter
    max_seconds: float | None = None
    min_fps: float = 0.0
    scene_frames: int = 0  # scene_split's min_scene_frames: the shortest scene that can be cut off
    trim_seconds: float = 0.0  # trim head + tail given in seconds
    trim_frames: int = 0  # trim head + tail given in frames
    subset_seconds: tuple[float, float] | None = None  # the longest [min, max] duration range a subset asks for


def source_limits(spec_obj, source: str) -> Limits:
    """The Limits of SOURCE: every pipeline reading it and every subset of those pipelines' outputs."""
    pipelines = [p for p in spec_obj.data.pipelines if source in p.sources]
    min_side, min_seconds, max_seconds, min_fps = 0, 0.0, None, 0.0
    scene_frames, trim_seconds, trim_frames = 0, 0.0, 0
    for pipeline in pipelines:
        for op in pipeline.ops:
            if op.kind == "resolution":
                min_side = max(min_side, op.min_short_side_px or 0, op.min_width_px or 0, op.min_height_px or 0)
            elif op.kind == "duration":
                min_seconds = max(min_seconds, op.min_seconds or 0.0)
                min_fps = max(min_fps, op.min_fps or 0.0)
                if op.max_seconds is not None:
                    max_seconds = op.max_seconds if max_seconds is None else min(max_seconds, op.max_seconds)
            elif op.kind == "scene_split":
                scene_frames = max(scene_frames, op.min_scene_frames)
            elif op.kind == "trim":
                if op.unit == "frames":
                    trim_frames = max(trim_frames, int(op.head + op.tail))
                else:
                    trim_seconds = max(trim_seconds, op.head + op.tail)
    parents = {d.name: d.subset_of for d in spec_obj.data.datasets}
    outputs = {p.output for p in pipelines}

    def from_outputs(name: str | None) -> bool:  # a subset (of a subset ...) of these pipelines' outputs
        seen = set()
        while name is not None and name not in outputs and name not in seen:
            seen.add(name)
            name = parents.get(name)
        return name in outputs

    ranges = [(d.where.min_seconds or 0.0, d.where.max_seconds or math.inf) for d in spec_obj.data.datasets
              if d.where is not None and d.where.min_seconds is not None and from_outputs(d.subset_of)]
    subset = max(ranges, default=None)
    return Limits(min_side, min_seconds, max_seconds, min_fps, scene_frames, trim_seconds, trim_frames, subset)


# --- scenes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A filled shape; position and radius are fractions of the frame's short side, from its centre."""

    kind: str
    colour: str
    x: float
    y: float
    radius: float


@dataclass(frozen=True)
class Scene:
    """What a sample shows: a textured background and one or two shapes."""

    background: str
    texture_seed: int
    shapes: tuple[Shape, ...]

    def caption(self) -> str:
        parts = [f"a {s.colour} {s.kind}" for s in self.shapes]
        article = "an" if self.background[0] in "aeiou" else "a"
        return f"{' and '.join(parts)} on {article} {self.background} background"


def random_scene(rng: np.random.Generator, shapes: int = 1) -> Scene:
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    colours = [c for c in COLOURS if c != background]
    picked = rng.choice(len(colours), shapes, replace=False)
    kinds = rng.choice(len(SHAPES), shapes, replace=False)
    placed = []
    for number, (colour, kind) in enumerate(zip(picked, kinds)):
        x = float(rng.uniform(-0.2, 0.2)) + (0.0 if shapes == 1 else (-0.22 if number == 0 else 0.22))
        placed.append(Shape(SHAPES[int(kind)], colours[int(colour)], x, float(rng.uniform(-0.15, 0.15)),
                            float(rng.uniform(0.14, 0.24) if shapes > 1 else rng.uniform(0.17, 0.32))))
    return Scene(background, int(rng.integers(2**31)), tuple(placed))


def background(scene: Scene, width: int, height: int) -> np.ndarray:
    """The textured background (RGB uint8, height x width): soft blobs of nearby tones plus grain."""
    rng = np.random.default_rng(scene.texture_seed)
    base = COLOURS[scene.background]
    canvas = Image.new("RGB", (width, height), base)
    draw = ImageDraw.Draw(canvas)
    side = min(width, height)
    for _ in range(int(rng.integers(4, 9)) * max(1, width * height // side**2)):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(side / 20, side / 6)
        tone = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in base)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tone)
    cell = max(1.0, side / GRAIN_CELLS)
    grain = rng.integers(-GRAIN, GRAIN + 1, (max(1, round(height / cell)), max(1, round(width / cell))), np.int16)
    grain = cv2.resize(grain, (width, height), interpolation=cv2.INTER_NEAREST)
    return np.clip(np.asarray(canvas, dtype=np.int16) + grain[..., None], 0, 255).astype(np.uint8)


def draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, width: int, height: int) -> None:
    side = min(width, height)
    cx, cy, r = width / 2 + shape.x * side, height / 2 + shape.y * side, shape.radius * side
    colour = COLOURS[shape.colour]
    if shape.kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape.kind == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape.kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape.kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(2, round(r / 4)))
    else:  # a five-pointed star
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy - radius * math.sin(angle)))
        draw.polygon(points, fill=colour)


def render(scene: Scene, width: int, height: int, backdrop: np.ndarray | None = None) -> Image.Image:
    """SCENE at WIDTH x HEIGHT, on BACKDROP (a crop of a larger background) or on its own background."""
    image = Image.fromarray(background(scene, width, height) if backdrop is None else backdrop)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        draw_shape(draw, shape, width, height)
    return image


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# --- samples ------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One raw sample: its members by extension (without the key), and the metadata for KEY.json."""

    kind: str
    members: dict[str, bytes]
    metadata: dict


def image_samples(count: int, seed: int, limits: Limits) -> list[Sample]:
    """Mostly clean shape images at least `limits.min_side` on the short side, plus IMAGE_SLOTS cases."""
    rng = np.random.default_rng(seed)
    clean: list[tuple[Image.Image, str]] = []
    samples = []
    for index in range(count):
        kind = IMAGE_SLOTS.get(index % SLOT_COUNT, "clean")
        if kind in ("duplicate", "near_duplicate") and clean:
            image, caption = clean[int(rng.integers(len(clean)))]
            if kind == "near_duplicate":  # the same picture re-encoded at low quality, slightly smaller
                image = image.resize((image.width - 8, image.height - 8))
            samples.append(_image_sample(kind, jpeg(image, 92 if kind == "duplicate" else 60), caption))
            continue
        side = max(int(rng.choice(IMAGE_SIDES)), limits.min_side)
        width = side * 4 // 3 if rng.random() < 0.3 else side
        scene = random_scene(rng, shapes=1 + int(rng.random() < 0.3))
        image, caption = render(scene, width, side), scene.caption()
        if kind == "corrupt":  # a truncated JPEG
            data = jpeg(image)
            samples.append(_image_sample(kind, data[: len(data) // 3], caption, (width, side)))
        elif kind == "blurry":
            samples.append(_image_sample(kind, jpeg(image.filter(ImageFilter.GaussianBlur(8))), caption))
        elif kind == "tiny":  # below the resolution filter, if the spec has one
            tiny = max(16, min(64, limits.min_side // 2 or 64))
            samples.append(_image_sample(kind, jpeg(image.resize((tiny, tiny))), caption))
        else:
            clean.append((image, caption))
            samples.append(_image_sample("clean", jpeg(image), caption))
    return samples


def _image_sample(kind: str, data: bytes, caption: str, size: tuple[int, int] | None = None) -> Sample:
    width, height = size or Image.open(io.BytesIO(data)).size
    return Sample(kind, {"jpg": data, "txt": caption.encode()},
                  {"width": width, "height": height, "synthetic_kind": kind})


@dataclass(frozen=True)
class ClipPlan:
    """The frames of one clip: size, rate, and per scene its frame count."""

    width: int
    height: int
    fps: int
    scenes: tuple[int, ...]

    @property
    def frames(self) -> int:
        return sum(self.scenes)


def clip_plan(rng: np.random.Generator, kind: str, limits: Limits, longest: bool) -> ClipPlan:
    """Size, frame rate and length of a clip of KIND that passes (or, for too_short, fails) LIMITS.

    A clean clip lasts min_seconds plus 0.5-2 s (1-3 s without a duration filter; sides over 256 px: plus
    0.5 s at the lowest allowed frame rate); `longest` stretches it to the middle of the longest subset
    duration range plus the trimmed frames. Every scene is longer than the trim plus scene_split's
    min_scene_frames, so both scenes of a scene_cut clip survive."""
    side = max(int(rng.choice(VIDEO_SIDES)), limits.min_side)
    side += side % 2
    width = side if side > 256 else side * 4 // 3 // 2 * 2  # large sides stay square to keep clips light
    large = side > 256  # large sides (a spec's resolution filter) get the fewest frames that pass
    rates = [f for f in VIDEO_FPS if f >= limits.min_fps][: 1 if large else 3] or [math.ceil(limits.min_fps)]
    fps = int(rng.choice(rates))
    trim = limits.trim_frames + math.ceil(limits.trim_seconds * fps)
    extra = (0.5,) if large else (0.5, 1.0, 2.0)
    seconds = limits.min_seconds + float(rng.choice(extra)) if limits.min_seconds else float(
        rng.choice((1.0, 2.0, 3.0)))
    if longest and limits.subset_seconds is not None:
        low, high = limits.subset_seconds
        seconds = max(seconds, (low + min(high, low + 2)) / 2 + trim / fps)
    if limits.max_seconds is not None:
        seconds = min(seconds, limits.max_seconds)
    frames = max(round(seconds * fps), trim + limits.scene_frames + 4)
    if kind == "too_short":
        short = min(limits.min_seconds / 2, 0.5) if limits.min_seconds else 0.25
        return ClipPlan(width, side, fps, (max(3, round(short * fps)),))
    if kind == "scene_cut":
        half = max(-(-frames // 2), trim + limits.scene_frames + 4)
        return ClipPlan(width, side, fps, (half, half))
    return ClipPlan(width, side, fps, (frames,))


def clip_frames(scene: Scene, plan: ClipPlan, frames: int, rng: np.random.Generator, static: bool) -> list[np.ndarray]:
    """FRAMES RGB frames of SCENE: the background pans PAN_PX per frame in a fixed direction and each shape
    drifts at its own velocity (about a third of the short side over the clip); `static`: nothing moves."""
    width, height = plan.width, plan.height
    margin = frames * PAN_PX + 2
    backdrop = background(scene, width + margin, height + margin)
    direction = (int(rng.choice((0, 1))), int(rng.choice((0, 1))))
    velocities = [rng.uniform(-1, 1, 2) * 0.35 / max(1, frames - 1) for _ in scene.shapes]
    out = []
    for t in range(frames):
        step = 0 if static else t
        dx, dy = (step * PAN_PX if direction[0] else margin - 1 - step * PAN_PX), step * PAN_PX * direction[1]
        crop = np.ascontiguousarray(backdrop[dy : dy + height, dx : dx + width])
        moved = tuple(replace(s, x=s.x + v[0] * step, y=s.y + v[1] * step) for s, v in zip(scene.shapes, velocities))
        out.append(np.asarray(render(replace(scene, shapes=moved), width, height, crop)))
    return out


def mp4(frames: list[np.ndarray], fps: int) -> bytes:
    """RGB frames as an mp4v-coded mp4 (OpenCV writes containers to paths only: a scratch file)."""
    height, width = frames[0].shape[:2]
    handle, path = tempfile.mkstemp(suffix=".mp4")
    os.close(handle)
    try:
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write mp4v video at {width}x{height}, {fps} fps; check the "
                               "opencv-python build has FFmpeg (cv2.getBuildInformation())")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        return Path(path).read_bytes()
    finally:
        Path(path).unlink(missing_ok=True)


def zero_frame_data(data: bytes) -> bytes:
    """The mp4 with its coded frames (the mdat box payload) zeroed: the container still opens and reports
    its frames, none of which decodes."""
    at = data.find(b"mdat") - 4
    if at < 0:
        raise ValueError("no mdat box in the mp4")
    size = int.from_bytes(data[at : at + 4], "big")
    return data[: at + 8] + bytes(size - 8) + data[at + size :]


def video_samples(count: int, seed: int, limits: Limits) -> list[Sample]:
    """Mostly clean moving-shape clips that pass LIMITS, plus VIDEO_SLOTS cases. The first clean clip of
    each SLOT_COUNT is long enough for the longest subset duration range, if any."""
    rng = np.random.default_rng(seed)
    clean: list[Sample] = []
    samples = []
    for index in range(count):
        kind = VIDEO_SLOTS.get(index % SLOT_COUNT, "clean")
        if kind == "duplicate" and clean:
            original = clean[int(rng.integers(len(clean)))]
            samples.append(Sample(kind, dict(original.members), {**original.metadata, "synthetic_kind": kind}))
            continue
        plan = clip_plan(rng, kind, limits, longest=index % SLOT_COUNT == 0)
        scene = random_scene(rng, shapes=1 + int(rng.random() < 0.4))
        frames = clip_frames(scene, plan, plan.scenes[0], rng, static=kind == "static")
        caption = scene.caption()
        if kind == "scene_cut":  # a second, unrelated scene: a hard cut at plan.scenes[0]
            other = random_scene(rng)
            while other.background == scene.background:
                other = random_scene(rng)
            frames += clip_frames(other, plan, plan.scenes[1], rng, static=False)
            caption = f"{caption}, then {other.caption()}"
        data = mp4(frames, plan.fps)
        if kind == "corrupt":
            data = zero_frame_data(data)
        metadata = {"width": plan.width, "height": plan.height, "fps": plan.fps, "frame_count": plan.frames,
                    "duration_s": plan.frames / plan.fps, "synthetic_kind": kind}
        if kind == "scene_cut":
            metadata["scene_cut_frame"] = plan.scenes[0]
        sample = Sample(kind, {"mp4": data, "txt": caption.encode()}, metadata)
        if kind == "clean":
            clean.append(sample)
        samples.append(sample)
    return samples


def edit(scene: Scene, rng: np.random.Generator, which: str) -> tuple[Scene, str]:
    """SCENE with one edit applied, and the instruction that asks for it."""
    index = int(rng.integers(len(scene.shapes)))
    shape = scene.shapes[index]

    def with_shape(new: Shape | None) -> tuple[Shape, ...]:
        kept = [s for s in scene.shapes if s is not shape]
        return tuple(kept if new is None else [*kept[:index], new, *kept[index:]])

    if which == "recolour":
        colour = str(rng.choice([c for c in COLOURS if c not in (shape.colour, scene.background)]))
        return replace(scene, shapes=with_shape(replace(shape, colour=colour))), f"make the {shape.kind} {colour}"
    if which == "move":
        towards = str(rng.choice(("left", "right", "up", "down")))
        dx, dy = {"left": (-0.2, 0), "right": (0.2, 0), "up": (0, -0.2), "down": (0, 0.2)}[towards]
        moved = replace(shape, x=shape.x + dx, y=shape.y + dy)
        return replace(scene, shapes=with_shape(moved)), f"move the {shape.kind} {towards}"
    if which == "resize":
        bigger = shape.radius < 0.22
        sized = replace(shape, radius=shape.radius * (1.5 if bigger else 0.6))
        return replace(scene, shapes=with_shape(sized)), f"make the {shape.kind} {'bigger' if bigger else 'smaller'}"
    if which == "remove" and len(scene.shapes) > 1:
        return replace(scene, shapes=with_shape(None)), f"remove the {shape.colour} {shape.kind}"
    colour = str(rng.choice([c for c in BACKGROUNDS if c != scene.background and
                             all(c != s.colour for s in scene.shapes)]))
    return replace(scene, background=colour), f"change the background to {colour}"


def edit_triplet_samples(count: int, seed: int, limits: Limits) -> list[Sample]:
    """Source image, edited target and instruction; the edits cycle through EDITS."""
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        which = EDITS[index % len(EDITS)]
        side = max(int(rng.choice(IMAGE_SIDES)), limits.min_side)
        scene = random_scene(rng, shapes=2 if which == "remove" else 1 + int(rng.random() < 0.3))
        target, instruction = edit(scene, rng, which)
        members = {"jpg": jpeg(render(target, side, side)), "source.jpg": jpeg(render(scene, side, side)),
                   "txt": instruction.encode()}
        samples.append(Sample("clean", members, {"width": side, "height": side, "edit": which,
                                                  "source_caption": scene.caption(),
                                                  "target_caption": target.caption(), "synthetic_kind": "clean"}))
    return samples


GENERATORS = {"image": image_samples, "image_text": image_samples, "video": video_samples,
              "video_text": video_samples, "image_edit_triplet": edit_triplet_samples}


# --- shards -------------------------------------------------------------------------------------------------


def write_shard(path: Path, key_prefix: str, samples: list[tuple[int, Sample]]) -> None:
    """One webdataset tar (members sorted by name, mtime 0), written under a temporary name and renamed."""
    part = path.with_suffix(".tar.part")
    with tarfile.open(part, "w", format=tarfile.USTAR_FORMAT) as tar:
        for index, sample in samples:
            key = f"{key_prefix}-{index:06d}"
            members = {**sample.members, "json": json.dumps({"key": key, **sample.metadata}, sort_keys=True).encode()}
            for ext, data in sorted(members.items()):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    part.replace(path)


def load_spec(spec):
    """A spec object from a shipped spec's name (or a spec object, returned as is)."""
    if not isinstance(spec, str):
        return spec
    from compiler.targets import load_target

    return load_target(spec)


def preference_sources(spec_obj) -> set[str]:
    """Sources whose samples reach a preference stage (stage.loss diffusion_dpo): through the pipeline that
    writes the root of a dataset the stage reads."""
    parents = {dataset.name: dataset.subset_of for dataset in spec_obj.data.datasets}
    roots = set()
    for stage in spec_obj.schedule.stages:
        if stage.loss is not None and stage.loss.kind == "diffusion_dpo":
            for use in stage.datasets:
                name = use.dataset
                while parents.get(name):
                    name = parents[name]
                roots.add(name)
    return {source for pipeline in spec_obj.data.pipelines if pipeline.output in roots for source in pipeline.sources}


def add_rejected(samples: list[Sample]) -> None:
    """Make every sample a preference pair: its own media is preferred, and the media of the next clean sample
    with other content (another scene, so it contradicts the caption) is the rejected one (KEY.rejected.<ext>)."""
    clean = [sample for sample in samples if sample.kind == "clean"]
    for index, sample in enumerate(samples):
        ext = next(ext for ext in ("jpg", "mp4") if ext in sample.members)
        others = [other for other in clean[index % len(clean):] + clean[: index % len(clean)]
                  if other.members[ext] != sample.members[ext]]
        sample.members[f"rejected.{ext}"] = others[0].members[ext]


def make_raw(raw_dir: str | Path, spec, count: int = 48, seed: int = 0, shards: int = 2) -> dict[str, list[Path]]:
    """Synthetic raw webdataset shards RAW_DIR/<source>/<source>-NNNNN.tar for every source of SPEC (a
    shipped spec's name or a spec object): COUNT samples per source split evenly over SHARDS shards, so
    the first shard alone holds every kind. Samples of sources that feed a preference
    stage carry a rejected image or clip (add_rejected). Returns the shard paths per source."""
    spec_obj = load_spec(spec)
    raw_dir = Path(raw_dir)
    written: dict[str, list[Path]] = {}
    for number, source in enumerate(spec_obj.data.sources):
        generator = GENERATORS.get(source.modality)
        if generator is None:
            raise NotImplementedError(f"data.sources[{number}] ({source.name}): no synthetic data for modality "
                                      f"{source.modality!r}; known: {sorted(GENERATORS)}")
        samples = generator(count, seed + 1000 * number, source_limits(spec_obj, source.name))
        if source.name in preference_sources(spec_obj):
            add_rejected(samples)
        folder = raw_dir / source.name
        folder.mkdir(parents=True, exist_ok=True)
        per_shard = -(-count // shards)
        paths = []
        for shard in range(shards):
            path = folder / f"{source.name}-{shard:05d}.tar"
            indices = range(shard * per_shard, min(count, (shard + 1) * per_shard))
            write_shard(path, source.name, [(i, samples[i]) for i in indices])
            paths.append(path)
        written[source.name] = paths
    return written

"""Ops that read only the container header: probe, resolution, aspect ratio, duration and frame rate.

They run before any pixel decode (the planner keeps the user's order; put them first). Sizes are as
displayed: an EXIF-rotated photo 4000x3000 stored sideways counts as 3000x4000.
"""

from __future__ import annotations

from runtime.curation.api import FULL, KEEP, MapOp, Score, Verdict
from runtime.curation.records import Record
from runtime.curation.registry import register


@register("probe")
class Probe(MapOp):
    """Reads the header into metadata; `check` first_last / full also decodes pixels. Unreadable: quarantined.

    An image's decoding check is the stage's decode (luma-only if no op needs colour: it entropy-decodes
    every component all the same)."""

    needs_color = False

    def decode_side(self) -> int | None:
        return None if self.spec.check == "header" else FULL

    def decide(self, record: Record, score: Score | None) -> Verdict:
        pixels = record.pixels
        header = pixels.header()
        record.metadata.update(format=header.format, width=header.width, height=header.height)
        if header.kind == "video":
            record.metadata.update(fps=header.fps, frame_count=header.frame_count, duration_s=header.duration_s)
        else:
            record.metadata["orientation"] = header.orientation
        if self.spec.check == "first_last":
            pixels.first_last_frames() if header.kind == "video" else pixels.load(FULL, grey=True)
        elif self.spec.check == "full":
            pixels.verify_video() if header.kind == "video" else pixels.load(FULL, grey=True)
        return KEEP


@register("resolution")
class Resolution(MapOp):
    """Minimum short side / width / height and maximum long side, in pixels."""

    def decide(self, record: Record, score: Score | None) -> Verdict:
        header = record.pixels.header()
        width, height, spec = header.width, header.height, self.spec
        checks = [
            (spec.min_short_side_px, min(width, height) < (spec.min_short_side_px or 0), "short side below minimum"),
            (spec.min_width_px, width < (spec.min_width_px or 0), "width below minimum"),
            (spec.min_height_px, height < (spec.min_height_px or 0), "height below minimum"),
            (spec.max_long_side_px, max(width, height) > (spec.max_long_side_px or 0), "long side above maximum"),
        ]
        for limit, failed, reason in checks:
            if limit is not None and failed:
                return Verdict.drop(reason, f"{width}x{height} px, limit {limit}")
        return KEEP


@register("aspect_ratio")
class AspectRatio(MapOp):
    """width / height inside [min_ratio, max_ratio]."""

    def decide(self, record: Record, score: Score | None) -> Verdict:
        header = record.pixels.header()
        ratio, low, high = header.width / header.height, self.spec.min_ratio, self.spec.max_ratio
        if not low <= ratio <= high:
            detail = f"{header.width}x{header.height} = {ratio:.3f}, allowed [{low:g}, {high:g}]"
            return Verdict.drop("aspect ratio out of range", detail)
        return KEEP


@register("duration")
class Duration(MapOp):
    """Video duration in seconds (frames / container fps) and frame rate; images pass."""

    def applies(self, record: Record) -> bool:
        return record.is_video

    def decide(self, record: Record, score: Score | None) -> Verdict:
        header = record.pixels.header()
        seconds, fps, spec = header.duration_s, header.fps, self.spec
        detail = f"{header.frame_count} frames at {fps:g} fps = {seconds:.2f} s"
        if spec.min_fps is not None and fps < spec.min_fps:
            return Verdict.drop("frame rate below min_fps", f"{detail}; min_fps {spec.min_fps:g}")
        if spec.min_seconds is not None and seconds < spec.min_seconds:
            return Verdict.drop("shorter than min_seconds", f"{detail}; min_seconds {spec.min_seconds:g}")
        if spec.max_seconds is not None and seconds > spec.max_seconds:
            return Verdict.drop("longer than max_seconds", f"{detail}; max_seconds {spec.max_seconds:g}")
        return KEEP

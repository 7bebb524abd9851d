"""The space the backbone denoises in: VAE latents, normalised, or pixels as they are.

Pixels are in [-1, 1], [B, C, H, W] for images and [B, C, F, H, W] for videos. A LatentSpace gets:
- a 2D KL VAE (runtime/encoders/vae_kl.py) for image specs, or
- the causal Wan-style VAE (runtime/encoders/vae_wan.py) for causal video specs; released weights choose for
  themselves through their config's _class_name, so Qwen-Image's AutoencoderKLQwenImage (a causal VAE)
  encodes its images as one-frame videos, or
- the non-causal video VAE (runtime/encoders/vae_video.py) for non-causal specs with temporal compression
  k > 1 (Allegro). It has no lone first frame, so an image [B, C, H, W] is encoded as a still clip of k
  copies (one latent frame, returned as [B, c, h, w]) and 4D latents decode to the mean of their k frames.
  Image stages of such specs (Allegro's T2I pre-training) thus train in the video VAE's own latent space.
  Released Allegro weights (AutoencoderKLAllegro) do not load: vae_video.py's layout is not theirs.

Normalisation: latents = (z - shift) * scale, z the posterior mean (or a sample of it). The spec's
scaling_factor / shift_factor win (FLUX: (z - 0.1159) * 0.3611, black-forest-labs/flux src/flux/util.py), as
do its per-channel latents_mean / latents_std ((z - mean) / std; Wan 2.1, Qwen-Image); without them the
weights' config supplies its own (diffusers scaling_factor / shift_factor, or Wan's per-channel
latents_mean / latents_std: (z - mean) / std, as in diffusers WanPipeline); a spec and config that disagree
is an error. PixelSpace (Imagen's cascade) encodes and decodes as the identity.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from runtime.encoders.model_directory import MissingWeightsError, ModelDirectory
from runtime.encoders.vae_kl import AutoencoderKL2D, AutoencoderKLConfig
from runtime.encoders.vae_video import NonCausalVideoVAE, VideoVAEConfig
from runtime.encoders.vae_wan import CausalVAEConfig, CausalVideoVAE

if TYPE_CHECKING:
    from compiler.schema.architecture import LatentSpace, PixelSpace

FIELD = "architecture.space"
VAE_FOLDER = ("a diffusers-format VAE folder (config.json and diffusion_pytorch_model.safetensors, e.g. the vae/ "
              "folder of a diffusers pipeline repository)")
VAE_CLASSES = {"AutoencoderKL": "kl", "AutoencoderKLWan": "causal", "AutoencoderKLQwenImage": "causal"}
# Released VAEs recognised but not loadable, and why.
UNSUPPORTED_VAES = {
    "AutoencoderKLAllegro": (
        "Allegro's VAE (per-frame 2D resnets interleaved with temporal conv layers, encoded in overlapping "
        "24-frame tiles; diffusers models/autoencoders/autoencoder_kl_allegro.py) has no key-compatible "
        "implementation here: runtime/encoders/vae_video.py is a plain 3D-conv VAE of the same compression "
        "with its own layout. Run at scale 'smoke' (a tiny random stand-in) or port the Allegro layout"
    ),
}
TINY_WIDTH = 8  # smoke VAEs: 8 channels at full resolution, 16 below; the compression factors are the spec's


class PixelCodec(nn.Module):
    """Pixel space: encode and decode are the identity, on the codec's device as a VAE's output would be."""

    def __init__(self):
        super().__init__()
        # No weights to say where the codec lives: an empty buffer follows .to(device) instead.
        self.register_buffer("anchor", torch.empty(0), persistent=False)

    def encode(self, pixels: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None):
        """The pixels themselves, on the codec's device."""
        return pixels.to(self.anchor.device)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The pixels themselves."""
        return latents


class LatentCodec(nn.Module):
    """A frozen VAE plus the latent normalisation: pixels -> normalised latents -> pixels."""

    def __init__(self, vae: AutoencoderKL2D | CausalVideoVAE | NonCausalVideoVAE, shift: torch.Tensor,
                 scale: torch.Tensor):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.register_buffer("shift", shift, persistent=False)  # [channels] or [1]
        self.register_buffer("scale", scale, persistent=False)
        self.video = not isinstance(vae, AutoencoderKL2D)
        # Frames an image is repeated to so that it makes exactly one latent frame: the causal VAE encodes
        # frame 0 alone; the non-causal one needs k frames per latent frame.
        self.frames_per_image = vae.config.temporal_compression if isinstance(vae, NonCausalVideoVAE) else 1

    def encode(self, pixels: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None):
        """Normalised latents of `pixels`: the posterior mean, or a draw from it when `sample`.

        Images [B, C, H, W] give [B, c, h, w]; videos [B, C, F, H, W] (video VAEs only) give [B, c, f, h, w].
        """
        vae_param = next(self.vae.parameters())
        pixels = pixels.to(device=vae_param.device, dtype=vae_param.dtype)
        image = pixels.ndim == 4
        if not self.video and not image:
            raise ValueError(f"this spec's VAE is an image VAE: pass images [B, C, H, W], got {tuple(pixels.shape)}")
        if image and self.video:
            pixels = pixels.unsqueeze(2).expand(-1, -1, self.frames_per_image, -1, -1)
        mean, logvar = self.vae.encode_moments(pixels).chunk(2, dim=1)
        z = mean
        if sample:  # diffusers DiagonalGaussianDistribution: log-variance clamped to [-30, 20]
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
            z = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = z.squeeze(2) if image and self.video else z
        return (z - self._per_channel(self.shift, z)) * self._per_channel(self.scale, z)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels of normalised `latents`, shaped like the input of `encode` (an image: the mean of its frames)."""
        z = latents / self._per_channel(self.scale, latents) + self._per_channel(self.shift, latents)
        image = z.ndim == 4
        if self.video:
            pixels = self.vae.decode(z.unsqueeze(2) if image else z)
            return pixels.mean(dim=2) if image else pixels
        if not image:
            raise ValueError(f"this spec's VAE is an image VAE: pass latents [B, c, h, w], got {tuple(z.shape)}")
        return self.vae.decode(z)

    @staticmethod
    def _per_channel(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return value.view(1, -1, *(1,) * (like.ndim - 2)).to(like.dtype)


def build_latent_space(space: LatentSpace | PixelSpace, scale: str, directory: ModelDirectory,
                       device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32) -> tuple[PixelCodec | LatentCodec, list[str]]:
    """The codec of `space` and the report lines saying which VAE and normalisation it uses."""
    if space.kind == "pixel":
        return PixelCodec().to(device), [f"space: pixel space ({space.channels} channels): identity encode/decode, no VAE"]
    entry = directory.entry(space.vae)
    label = f"VAE {space.vae}"
    if entry.present:
        config = json.loads((entry.path / "config.json").read_text())
        vae = _load_vae(config, entry.path, space)
        lines = [f"{label}: {type(vae).__name__} loaded from {entry.path}"]
    elif scale == "full" and _kind(space) == "noncausal":  # asking for weights that could not load would mislead
        raise NotImplementedError(f"{FIELD}.vae: {space.vae!r} is a non-causal video VAE; no released one loads "
                                  f"here: {UNSUPPORTED_VAES['AutoencoderKLAllegro']}")
    elif scale == "full" or (entry.path is not None and entry.path.is_dir()):
        raise MissingWeightsError(directory.missing_message(entry, f"{FIELD}.vae", VAE_FOLDER))
    else:
        config = {}
        vae = _tiny_vae(space)
        why = f"no weights at {entry.path}" if entry.path else "no model directory was given"
        lines = [(f"{label}: RANDOMLY INITIALISED tiny {type(vae).__name__} (width {TINY_WIDTH}, "
                  f"{space.spatial_compression}x space, {space.temporal_compression}x time, {space.channels} "
                  f"channels, as the spec), because scale is smoke and {why}")]
    shift, multiplier, how = _normalisation(space, config, entry.path)
    codec = LatentCodec(vae, shift, multiplier).to(device=device, dtype=dtype)
    return codec, [*lines, f"{label}: latents = {how}"]


def _kind(space: LatentSpace) -> str:
    """Which VAE a latent space needs: "kl" (images), "causal" or "noncausal" (videos)."""
    if space.causal:
        return "causal"
    return "noncausal" if space.temporal_compression > 1 else "kl"


def _load_vae(config: dict, path: Path, space: LatentSpace) -> AutoencoderKL2D | CausalVideoVAE:
    from safetensors.torch import load_file

    source = path / "config.json"
    class_name = config.get("_class_name")
    if class_name in UNSUPPORTED_VAES:
        raise NotImplementedError(f"{FIELD}.vae: {source} is a {class_name}, which this runtime cannot load: "
                                  f"{UNSUPPORTED_VAES[class_name]}")
    kind = VAE_CLASSES.get(class_name)
    if kind is None:
        raise ValueError(f"{source}: _class_name {class_name!r} is not a VAE this runtime builds; "
                         f"supported: {', '.join(VAE_CLASSES)}")
    needed = _kind(space)
    if needed == "noncausal":
        raise ValueError(f"{FIELD} is a non-causal video space ({space.temporal_compression}x time, causal=False) "
                         f"but {source} names {class_name}; no released non-causal video VAE loads here (see "
                         f"runtime/encoders/vae_video.py): run at scale 'smoke' or set {FIELD}.causal to match")
    video = needed == "causal"
    if video and kind == "kl":
        raise ValueError(f"{FIELD} is a video space ({space.temporal_compression}x time, causal={space.causal}) but "
                         f"{source} is a 2D AutoencoderKL; point {FIELD}.vae at a causal video VAE")
    if kind == "kl":
        vae: AutoencoderKL2D | CausalVideoVAE = AutoencoderKL2D(AutoencoderKLConfig.from_diffusers(config, str(source)))
        channels = vae.config.latent_channels
    else:
        vae = CausalVideoVAE(CausalVAEConfig.from_diffusers(config, str(source)))
        channels = vae.config.z_dim
    checks = [("channels", space.channels, channels),
              ("spatial_compression", space.spatial_compression, vae.config.spatial_compression)]
    if video:  # an image spec feeds one frame at a time, so a causal VAE's time factor does not apply
        checks.append(("temporal_compression", space.temporal_compression, vae.config.temporal_compression))
    for name, wanted, found in checks:
        if wanted != found:
            raise ValueError(f"{FIELD}.{name} is {wanted} but the VAE in {path} has {found}; fix the spec or "
                             f"point {FIELD}.vae at matching weights")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise MissingWeightsError(f"{path} has a config.json but no *.safetensors weights; it must hold {VAE_FOLDER}")
    state = {key: value for file in files for key, value in load_file(file).items()}
    try:
        vae.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"the weights in {path} do not fit the {type(vae).__name__} its config.json describes "
                         f"(diffusers key names expected): {error}") from error
    return vae


def _tiny_vae(space: LatentSpace) -> AutoencoderKL2D | CausalVideoVAE | NonCausalVideoVAE:
    """A randomly initialised VAE with the spec's channels and compression factors, 8-16 channels wide."""
    levels, time_levels = math.log2(space.spatial_compression), math.log2(space.temporal_compression)
    if not levels.is_integer() or not time_levels.is_integer() or time_levels > levels:
        raise ValueError(f"{FIELD}: the smoke VAE halves space (and time) once per level, so spatial_compression "
                         f"{space.spatial_compression} and temporal_compression {space.temporal_compression} must be "
                         f"powers of 2 with no more time halvings than space halvings")
    levels, time_levels = int(levels), int(time_levels)
    widths = (TINY_WIDTH,) + (2 * TINY_WIDTH,) * levels
    # Seeded by the VAE id so every process (every data-parallel rank) builds the same stand-in.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(space.vae.encode()))
        if _kind(space) == "noncausal":
            # Time halves at the first levels, as Allegro's temporal_downsample_blocks (True, True, False, False).
            temporal = tuple(level < time_levels for level in range(levels))
            return NonCausalVideoVAE(VideoVAEConfig(block_out_channels=widths, latent_channels=space.channels,
                                                    temporal_downsample=temporal, layers_per_block=1,
                                                    norm_num_groups=4))
        if _kind(space) == "causal":
            # Time halves at the last levels, as Wan 2.1's (False, True, True).
            temporal = tuple(level >= levels - time_levels for level in range(levels))
            return CausalVideoVAE(CausalVAEConfig(base_dim=TINY_WIDTH, z_dim=space.channels,
                                                  dim_mult=(1,) + (2,) * levels, num_res_blocks=1,
                                                  temperal_downsample=temporal))
        return AutoencoderKL2D(AutoencoderKLConfig(block_out_channels=widths, latent_channels=space.channels,
                                                   layers_per_block=1, norm_num_groups=4))


def _normalisation(space: LatentSpace, config: dict, path: Path | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(shift, scale, description): the spec's factors, else the weights' config's, else none."""
    spec_given = space.scaling_factor is not None or space.shift_factor is not None
    mean, std = config.get("latents_mean"), config.get("latents_std")  # diffusers writes null when absent
    if space.latents_mean is not None and space.latents_std is not None:
        if mean is not None and std is not None:
            for key, stated, wanted in (("latents_mean", mean, space.latents_mean),
                                        ("latents_std", std, space.latents_std)):
                if len(stated) != len(wanted) or not all(math.isclose(a, b, rel_tol=1e-6)
                                                         for a, b in zip(stated, wanted, strict=True)):
                    raise ValueError(f"{FIELD}.{key} is {wanted} but {path}/config.json states {stated}; "
                                     "make them agree")
        return (torch.tensor(space.latents_mean), 1.0 / torch.tensor(space.latents_std),
                f"(z - latents_mean) / latents_std, per channel, from {FIELD}")
    if mean is not None and std is not None:
        if len(mean) != space.channels or len(std) != space.channels:
            raise ValueError(f"{path}/config.json: latents_mean / latents_std have {len(mean)} / {len(std)} values "
                             f"for {space.channels} latent channels")
        if spec_given:
            raise ValueError(f"{FIELD} gives scaling_factor={space.scaling_factor}, shift_factor={space.shift_factor} "
                             f"but {path}/config.json states per-channel latents_mean / latents_std; drop the spec's "
                             f"factors to use the weights' statistics")
        return (torch.tensor(mean), 1.0 / torch.tensor(std),
                f"(z - latents_mean) / latents_std, per channel, from {path}/config.json")
    from_config = {key: config.get(key) for key in ("scaling_factor", "shift_factor")}
    if spec_given:
        for key, stated in from_config.items():
            wanted = getattr(space, key)
            if stated is not None and wanted is not None and not math.isclose(stated, wanted, rel_tol=1e-6):
                raise ValueError(f"{FIELD}.{key} is {wanted} but {path}/config.json states {stated}; "
                                 f"make them agree")
        factors, source = {key: getattr(space, key) for key in from_config}, FIELD
    elif any(value is not None for value in from_config.values()):
        factors, source = from_config, f"{path}/config.json"
    else:
        return torch.zeros(1), torch.ones(1), "z, unnormalised: neither the spec nor the VAE config gives a scale"
    shift = factors["shift_factor"] or 0.0
    scale = factors["scaling_factor"] if factors["scaling_factor"] is not None else 1.0
    return torch.tensor([shift]), torch.tensor([scale]), f"(z - {shift}) * {scale}, from {source}"

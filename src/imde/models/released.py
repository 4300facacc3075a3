"""Load the weights released with the original projects (Hu et al.'s MFF, BTS, CSPN, Depth Anything V2, DPT) and
imde's own checkpoints.

The files are read with ``torch.load(weights_only=True)`` or safetensors, so a checkpoint cannot run code. The loader
unwraps ``{"model": ...}`` / ``{"state_dict": ...}``, strips DataParallel's ``module.`` prefix, drops CSPN's
``post_process_layer.*`` (built inside the original forward), joins Hugging Face's separate query / key / value
projections into timm's ``qkv``, maps key names where an original layout differs from the modules used here, fills
the ``num_batches_tracked`` entries that PyTorch 0.3 files lack, and loads strictly by default.

Depth Anything V2 comes in two layouts: the original release (``depth_anything_v2_vits.pth``: the DINOv2 encoder under
``pretrained.``, which is imde's layout, and the DPT head under ``depth_head.``) and Hugging Face's
(``model.safetensors``: ``backbone.``, ``neck.``, ``head.``; imde's neck and head use these names).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from imde.utils.io import read_torch_file

DROPPED_PREFIXES = ("post_process_layer.",)  # and each model's own ``ignored_checkpoint_prefixes``
DATA_PARALLEL_PREFIX = "module."

Replacement = str | Callable[[re.Match[str]], str]


def _fusion(match: re.Match[str]) -> str:
    """The release's ``refinenetN`` (N = 1 shallowest) is Hugging Face's fusion layer ``4 - N`` (0 deepest)."""
    stage = 4 - int(match.group(1))
    unit = match.group(2)
    if unit == "out_conv":
        return f"neck.fusion_stage.layers.{stage}.projection."
    return f"neck.fusion_stage.layers.{stage}.residual_layer{unit[-1]}.convolution{match.group(3)}."


_HF_VIT = r"^(?:backbone|dpt)\.encoder\.layer\.(\d+)\."
# (pattern, replacement, why): applied to a file key only when the result is one of the model's keys.
RENAMES: tuple[tuple[re.Pattern[str], Replacement, str], ...] = (
    (re.compile(r"^(.*denselayer\d+\.(?:norm|conv))\.([12])\.(weight|bias|running_mean|running_var)$"), r"\1\2.\3",
     "old torchvision DenseNet names (norm.1 -> norm1)"),
    (re.compile(r"^(.*)\.layer0\.(.*)$"), r"\1.base.0.\2", "timm legacy SENet layer0 -> Hu et al.'s E.base.0"),
    (re.compile(r"^(.*)\.layer([1-4])\.(.*)$"), r"\1.base.\2.\3", "timm legacy SENet layerN -> Hu et al.'s E.base.N"),
    (re.compile(r"^encoder\.base_model\.features\.(.*)$"), r"encoder.base_model.\1",
     "timm DenseNet 'features.' prefix"),
    # Depth Anything V2's original head (depth_head.*) -> Hugging Face's neck / head names used by imde
    (re.compile(r"^depth_head\.projects\.(\d)\."), r"neck.reassemble_stage.layers.\1.projection.",
     "Depth Anything release: reassemble projection"),
    (re.compile(r"^depth_head\.resize_layers\.(\d)\."), r"neck.reassemble_stage.layers.\1.resize.",
     "Depth Anything release: reassemble resize"),
    (re.compile(r"^depth_head\.scratch\.layer([1-4])_rn\."), lambda m: f"neck.convs.{int(m.group(1)) - 1}.",
     "Depth Anything release: scratch.layerN_rn -> neck.convs.N-1"),
    (re.compile(r"^depth_head\.scratch\.refinenet([1-4])\.(out_conv|resConfUnit[12])\.(?:conv([12])\.)?"), _fusion,
     "Depth Anything release: refinenetN -> fusion layer 4-N"),
    (re.compile(r"^depth_head\.scratch\.output_conv1\."), "head.conv1.", "Depth Anything release: output_conv1"),
    (re.compile(r"^depth_head\.scratch\.output_conv2\.0\."), "head.conv2.", "Depth Anything release: output_conv2.0"),
    (re.compile(r"^depth_head\.scratch\.output_conv2\.2\."), "head.conv3.", "Depth Anything release: output_conv2.2"),
    # Hugging Face's DINOv2 / ViT backbones (backbone.* / dpt.*) -> timm's names under pretrained.*
    (re.compile(r"^(?:backbone|dpt)\.embeddings\.(cls_token|mask_token)$"), r"pretrained.\1",
     "Hugging Face embeddings: prefix tokens"),
    (re.compile(r"^(?:backbone|dpt)\.embeddings\.position_embeddings$"), "pretrained.pos_embed",
     "Hugging Face embeddings: position embeddings"),
    (re.compile(r"^(?:backbone|dpt)\.embeddings\.patch_embeddings\.projection\."), "pretrained.patch_embed.proj.",
     "Hugging Face embeddings: patch projection"),
    (re.compile(_HF_VIT + r"(?:norm1|layernorm_before)\."), r"pretrained.blocks.\1.norm1.", "Hugging Face ViT: norm1"),
    (re.compile(_HF_VIT + r"(?:norm2|layernorm_after)\."), r"pretrained.blocks.\1.norm2.", "Hugging Face ViT: norm2"),
    (re.compile(_HF_VIT + r"attention\.(?:output\.dense|o_proj)\."), r"pretrained.blocks.\1.attn.proj.",
     "Hugging Face ViT: attention output"),
    (re.compile(_HF_VIT + r"layer_scale([12])\.lambda1$"), r"pretrained.blocks.\1.ls\2.gamma",
     "Hugging Face DINOv2: layer scale"),
    (re.compile(_HF_VIT + r"mlp\.(fc[12])\."), r"pretrained.blocks.\1.mlp.\2.", "Hugging Face DINOv2: MLP"),
    (re.compile(_HF_VIT + r"intermediate\.dense\."), r"pretrained.blocks.\1.mlp.fc1.", "Hugging Face ViT: MLP in"),
    (re.compile(_HF_VIT + r"output\.dense\."), r"pretrained.blocks.\1.mlp.fc2.", "Hugging Face ViT: MLP out"),
    (re.compile(r"^(?:backbone|dpt)\.layernorm\."), "pretrained.norm.", "Hugging Face backbone: final LayerNorm"),
    (re.compile(r"^head\.head\.([024])\."), lambda m: f"head.conv{int(m.group(1)) // 2 + 1}.",
     "Hugging Face DPT head: head.head.0/2/4 -> head.conv1/2/3"),
)
# Hugging Face's separate attention projections, joined (query, key, value order) into timm's qkv.
QKV = re.compile(_HF_VIT + r"attention\.(?:attention\.(query|key|value)|([qkv])_proj)\.(weight|bias)$")
QKV_ORDER = {"query": 0, "q": 0, "key": 1, "k": 1, "value": 2, "v": 2}

# A key that identifies the architecture a state dict was saved from (for error messages).
SIGNATURES: tuple[tuple[str, str], ...] = (
    ("E.base.0.conv1.weight", "MFF with a SENet-154 encoder (Hu et al.): mff_senet154"),
    ("E.layer1.0.conv3.weight", "MFF with a ResNet-50-style encoder (Hu et al.): mff_resnet50"),
    ("E.layer1.0.conv2.weight", "MFF with a ResNet-18-style encoder: mff_resnet18 or mff_tiny"),
    ("encoder.base_model.conv0.weight", "BTS-DenseNet161: bts_densenet161_nyu / bts_densenet161_kitti"),
    ("gud_up_proj_layer1.conv1.weight", "CSPN-ResNet50: cspn_resnet50"),
    ("depth_head.scratch.output_conv1.weight", "Depth Anything (original release): depth_anything_v2_*"),
    ("backbone.embeddings.mask_token", "Depth Anything V2 (Hugging Face): depth_anything_v2_*"),
    ("neck.reassemble_stage.readout_projects.0.0.weight", "DPT (Hugging Face): dpt_large"),
)
_SHOWN = 5


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did to make a file fit the model.

    Attributes:
        path: The file read.
        wrapper: ``"model"`` or ``"state_dict"`` when the weights sat under that key, else ``None``.
        stripped_prefix: ``"module."`` when DataParallel's prefix was removed, else ``None``.
        renamed: File key -> model key, for every key whose name was mapped.
        merged: Model key -> the file keys concatenated into it (Hugging Face's query, key, value -> ``qkv``).
        dropped: File keys ignored on purpose (``post_process_layer.*``).
        filled: Model keys absent from the file and filled with zeros (``num_batches_tracked``).
        missing: Model keys the file lacks (only non-empty with ``strict=False``).
        unexpected: File keys the model lacks (only non-empty with ``strict=False``).
    """

    path: str
    wrapper: str | None = None
    stripped_prefix: str | None = None
    renamed: dict[str, str] = field(default_factory=dict)
    merged: dict[str, list[str]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _read(path: Path, allow_unsafe: bool) -> object:
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as err:
            raise ValueError(f"checkpoint {str(path)!r} cannot be read as safetensors ({err})") from err
    return read_torch_file(path, "checkpoint", weights_only=not allow_unsafe)


def _merge_qkv(state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
               report: LoadReport) -> dict[str, torch.Tensor]:
    """Join Hugging Face's per-layer query / key / value tensors into the model's ``qkv`` where it has one."""
    groups: dict[str, dict[int, str]] = {}
    for key in state:
        match = QKV.match(key)
        if match:
            target = f"pretrained.blocks.{match.group(1)}.attn.qkv.{match.group(4)}"
            groups.setdefault(target, {})[QKV_ORDER[match.group(2) or match.group(3)]] = key
    merged = dict(state)
    for target, parts in groups.items():
        if target not in expected or len(parts) != 3:
            continue
        keys = [parts[i] for i in range(3)]
        merged[target] = torch.cat([merged.pop(key) for key in keys], dim=0)
        report.merged[target] = keys
    return merged


def _unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    wrapper = None
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj, wrapper = obj[key], key
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, Mapping) else f"dict with keys {list(obj)[:_SHOWN]}"
        raise ValueError(f"checkpoint {str(path)!r} holds a {kind}; expected a state dict of tensors, possibly "
                         f"under a 'model' or 'state_dict' key")
    return dict(obj), wrapper


def guess_architecture(keys: set[str] | list[str]) -> str:
    """Name the architecture a state dict's keys come from (``"unknown"`` when no signature key is present)."""
    keys = set(keys)
    for key, name in SIGNATURES:
        if key in keys:
            return name
    return "unknown"


def _preview(keys: list[str]) -> str:
    head = ", ".join(keys[:_SHOWN])
    return f"{len(keys)} ({head}{', ...' if len(keys) > _SHOWN else ''})"


def _match_keys(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], report: LoadReport,
                ignored: tuple[str, ...]) -> dict[str, torch.Tensor]:
    if all(key.startswith(DATA_PARALLEL_PREFIX) for key in state) and state:
        state = {key[len(DATA_PARALLEL_PREFIX):]: value for key, value in state.items()}
        report.stripped_prefix = DATA_PARALLEL_PREFIX
    matched: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(ignored):
            report.dropped.append(key)
            continue
        if key not in expected:
            for pattern, replacement, _ in RENAMES:
                new_key = pattern.sub(replacement, key)
                if new_key != key and new_key in expected:
                    report.renamed[key] = new_key
                    key = new_key
                    break
        matched[key] = value
    for key, value in expected.items():
        if key not in matched and key.endswith("num_batches_tracked"):
            matched[key] = torch.zeros_like(value)
            report.filled.append(key)
    return matched


def adapt_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True,
                     source: str = "<state dict>") -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Map a state dict in an original layout onto ``model``'s keys and check it fits, without loading it.

    Args:
        model: The target model.
        state: A state dict (already unwrapped from ``model`` / ``state_dict``).
        strict: Require the keys to match exactly after the mappings.
        source: Where the state dict came from, for messages.

    Returns:
        The state dict in ``model``'s layout and the report of what was changed.

    Raises:
        ValueError: when the state dict does not fit (lists missing / unexpected / mis-shaped keys and names the
            architecture the keys seem to come from).
    """
    report = LoadReport(path=source)
    expected = model.state_dict()
    ignored = DROPPED_PREFIXES + tuple(getattr(model, "ignored_checkpoint_prefixes", ()))
    adapted = _match_keys(_merge_qkv(dict(state), expected, report), expected, report, ignored)
    missing = [key for key in expected if key not in adapted]
    unexpected = [key for key in adapted if key not in expected]
    original = {new: old for old, new in report.renamed.items()}
    original.update({new: old[0] for new, old in report.merged.items()})
    file_keys = [original.get(key, key) for key in adapted]
    mis_shaped = [f"{key} {tuple(adapted[key].shape)} vs {tuple(expected[key].shape)}"
                  for key in expected if key in adapted and adapted[key].shape != expected[key].shape]
    if mis_shaped or (strict and (missing or unexpected)):
        raise ValueError(
            f"checkpoint {source!r} does not fit {type(model).__name__}: the file seems to be for "
            f"{guess_architecture(file_keys)}. Missing keys: {_preview(missing)}; unexpected keys: "
            f"{_preview(unexpected)}; shape mismatches (file vs model): {_preview(mis_shaped)}"
        )
    report.missing, report.unexpected = missing, unexpected
    return adapted, report


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str], strict: bool = True,
                    allow_unsafe: bool = False) -> LoadReport:
    """Load a released or imde checkpoint into ``model`` (on any device) and report what was mapped.

    Args:
        model: The model to fill, e.g. ``imde.models.create("mff_resnet50")``.
        path: A file written by ``torch.save`` (a state dict, or a dict holding one under ``model``/``state_dict``)
            or a ``.safetensors`` file (Hugging Face's ``model.safetensors``).
        strict: Require the file's keys to match the model's exactly (after the mappings of :func:`adapt_state_dict`).
        allow_unsafe: Read with full unpickling (``weights_only=False``); only for files you trust.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not a state dict, needs unsafe unpickling, or does not fit the model (the
            message lists missing / unexpected / mis-shaped keys and names the architecture the file seems to be for).
    """
    path = Path(path)
    state, wrapper = _unwrap(_read(path, allow_unsafe), path)
    adapted, report = adapt_state_dict(model, state, strict=strict, source=str(path))
    report.wrapper = wrapper
    model.load_state_dict(adapted, strict=strict)
    return report

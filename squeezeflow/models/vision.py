"""torchvision architectures by name (`teacher.source: {kind: torchvision, name: resnet18}`), built with
weights=None: squeezeflow never downloads weights. The dataset decides the classes and the input channels."""

from __future__ import annotations

from torch import nn

from squeezeflow.imports import import_torchvision
from squeezeflow.models.graph import set_module


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    return next(((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _add_channel_axis(_module, args):
    (x, *rest) = args
    return (x.unsqueeze(1), *rest) if x.dim() == 3 else None


def torchvision_model(name: str, num_classes: int, input_shape: tuple[int, ...], **kwargs) -> nn.Module:
    """torchvision.models.get_model(name, weights=None, num_classes=...), its first convolution taking the data's
    channels (a grayscale (H, W) input gains its channel axis inside the model, so its ONNX takes (N, H, W))."""
    if kwargs.get("weights") or kwargs.get("weights_backbone"):
        raise ValueError("weights are never downloaded: give a checkpoint (teacher.source.checkpoint) instead")
    tv = import_torchvision()
    known = tv.models.list_models(module=tv.models)
    if name not in known:
        raise ValueError(f"unknown torchvision classification model '{name}'; known: {', '.join(sorted(known))}")
    if len(input_shape) not in (2, 3):
        raise ValueError(f"torchvision models take images, (C, H, W) or (H, W); the data's samples are "
                         f"{tuple(input_shape)}")
    kwargs = {"weights": None, **{k: v for k, v in kwargs.items() if k != "weights"}}
    model = tv.models.get_model(name, num_classes=num_classes, **kwargs)
    channels = input_shape[0] if len(input_shape) == 3 else 1
    found = _first_conv(model)
    if found and found[1].in_channels != channels:
        path, conv = found
        new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                        conv.groups if conv.groups == 1 else channels, conv.bias is not None, conv.padding_mode)
        set_module(model, path, new)
    if len(input_shape) == 2:
        model.register_forward_pre_hook(_add_channel_axis)
    return model

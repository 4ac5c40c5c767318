"""Which linear layers of a backbone get LoRA adapters: presets that work for any architecture.

``all-linear``: every linear layer of the transformer blocks (attention and MLP; peft's own preset).
``attention``: the linear layers of the attention modules (q, k, v, o in Llama-style models), as the
prototype's code at its HEAD hard-codes. ``qv``: the query and value projections only, as its earliest
commits. A list names modules by their last name (``["q_proj", "v_proj"]``); every name must exist.
Attention modules are found by their class name (``...Attention``), so no architecture is hard-coded.

:func:`add_lora` wraps a backbone with fresh adapters for one stage; on a CPU the adapters' dropout is folded
into their ``A`` matrices (:class:`FoldedDropoutLinear`: the same numbers, less memory kept for backward).
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError

LORA_PRESETS = ("all-linear", "attention", "qv")


def _attention_linears(model) -> list[str]:
    """Last names of the linear layers directly inside attention modules, in model order."""
    names: dict[str, None] = {}
    for module in model.modules():
        if type(module).__name__.endswith("Attention"):
            for name, child in module.named_children():
                if isinstance(child, nn.Linear):
                    names[name] = None
    return list(names)


def lora_targets(model, spec: str | list[str]) -> str | list[str]:
    """peft's ``target_modules`` for a preset or list (see the module docstring)."""
    if spec == "all-linear":
        return spec
    if isinstance(spec, str) and spec not in LORA_PRESETS:
        raise ConfigError(f"unknown lora_target_modules {spec!r}: a preset ({', '.join(LORA_PRESETS)}) or a list")
    attention = _attention_linears(model)
    if spec in ("attention", "qv"):
        if not attention:
            raise ConfigError(f"lora_target_modules {spec!r}: no linear layer inside a module named *Attention "
                              f"in {type(model).__name__}; name the modules in a list instead")
        if spec == "attention":
            return attention
        chosen = [n for n in attention if n.split("_")[0] in ("q", "v", "query", "value")]
        if len(chosen) != 2:
            raise ConfigError(f"lora_target_modules 'qv': no separate query and value projections in "
                              f"{type(model).__name__} (attention layers: {', '.join(attention)}); name them in a list")
        return chosen
    present = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [n for n in spec if n not in present]
    if missing:
        raise ConfigError(f"lora_target_modules: no linear layer named {', '.join(missing)} in "
                          f"{type(model).__name__} (its linear layers: {', '.join(sorted(present))})")
    return list(spec)


class _DropoutLinear(torch.autograd.Function):
    """``linear(dropout(x), weight)`` keeping ``x`` and a 1-byte mask for backward (see :class:`FoldedDropoutLinear`).

    Forward draws the mask exactly as ``torch.nn.functional.dropout`` does on a CPU (``bernoulli_(1 - p)`` on
    the default generator, then ``div_(1 - p)``; a cheaper draw tried in the twelfth session trained worse
    models, RESULTS.md); backward rebuilds ``x * noise`` from the kept mask and
    differentiates the same ``linear`` again under the forward's autocast state, so every number matches
    the unfolded computation with that mask."""

    @staticmethod
    def forward(ctx, x, weight, bias, p):
        noise = torch.empty_like(x).bernoulli_(1 - p).div_(1 - p)
        ctx.p, ctx.device = p, x.device.type
        ctx.autocast = torch.is_autocast_enabled(ctx.device)
        ctx.dtype = torch.get_autocast_dtype(ctx.device) if ctx.autocast else None
        ctx.save_for_backward(x, noise.ne(0), weight, bias)
        return nn.functional.linear(x * noise, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, keep, weight, bias = ctx.saved_tensors
        wanted = [(t, need) for t, need in zip((x.detach(), weight, bias), ctx.needs_input_grad[:3]) if t is not None]
        with torch.enable_grad(), torch.autocast(ctx.device, dtype=ctx.dtype, enabled=ctx.autocast):
            xd = wanted[0][0].requires_grad_(ctx.needs_input_grad[0])
            out = nn.functional.linear(xd * keep.to(x.dtype).div_(1 - ctx.p), weight, bias)
        inputs = [t for t, need in wanted if need]
        grads = iter(torch.autograd.grad(out, inputs, grad) if inputs else [])
        result = [next(grads) if need else None for t, need in wanted]
        result += [None] * (3 - len(result))
        return (*result, None)


class FoldedDropoutLinear(nn.Linear):
    """A LoRA ``A`` matrix with the adapter's dropout folded in, for inputs on a CPU.

    peft computes ``lora_B(lora_A(dropout(x)))``. On a CPU, autograd then keeps, for every adapted
    layer, the dropout's noise (a float tensor the size of the layer's input) and the dropped-out copy
    of the input that ``lora_A`` multiplies: with LoRA on all linear layers of SmolLM2 that is over half
    of what a training step keeps for backward (docs/performance.md). Folded, it keeps ``x`` (the
    same tensor for the q, k, v adapters, and for gate and up) and the mask as bytes, and rebuilds the
    dropped-out input in backward: the same random numbers, operations and results, less memory.
    Elsewhere (a GPU's fused dropout draws its masks differently) it runs peft's way.
    """

    dropout_p = 0.0

    def forward(self, x):
        if self.training and self.dropout_p > 0 and torch.is_grad_enabled() and x.device.type == "cpu":
            return _DropoutLinear.apply(x, self.weight, self.bias, self.dropout_p)
        return super().forward(nn.functional.dropout(x, self.dropout_p, self.training))


def fold_lora_dropout(peft_model, enable: bool = True) -> int:
    """Fold each plain LoRA adapter's dropout into its ``A`` matrix (see :class:`FoldedDropoutLinear`),
    or undo it (``enable=False``); returns how many adapters changed. The adapter's weights and state-dict
    keys stay as they are, so saving, loading and merging are unchanged."""
    from peft.tuners.lora import LoraLayer

    count = 0
    for module in peft_model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name in list(module.lora_dropout.keys()):
            lora_a, dropout = module.lora_A[name], module.lora_dropout[name]
            if name in getattr(module, "lora_variant", {}):
                continue
            if enable and type(lora_a) is nn.Linear and isinstance(dropout, nn.Dropout) and dropout.p > 0:
                lora_a.__class__, lora_a.dropout_p = FoldedDropoutLinear, dropout.p
                module.lora_dropout[name] = nn.Identity()
                count += 1
            elif not enable and type(lora_a) is FoldedDropoutLinear:
                module.lora_dropout[name] = nn.Dropout(lora_a.dropout_p)
                module.lora_dropout[name].train(lora_a.training)
                lora_a.__class__ = nn.Linear
                del lora_a.dropout_p
                count += 1
    return count


def add_lora(model, config):
    """``model`` wrapped by peft with fresh adapters on :func:`lora_targets`' layers (the adapter's dropout folded
    in, see :class:`FoldedDropoutLinear`, with or without gradient checkpointing, which is switched on first where
    the config asks)."""
    from peft import LoraConfig, get_peft_model

    from .model import quiet_peft

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=lora_targets(model, config.lora_target_modules), bias="none")
    if config.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x's name
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    with quiet_peft():
        peft_model = get_peft_model(model, lora)
    fold_lora_dropout(peft_model)  # with gradient checkpointing too: the same model (the recomputation replays the draws)
    return peft_model

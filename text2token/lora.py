"""Which linear layers of a backbone get LoRA adapters: presets that work for any architecture.

``all-linear``: every linear layer of the transformer blocks (attention and MLP; peft's own preset).
``attention``: the linear layers of the attention modules (q, k, v, o in Llama-style models), as the
prototype's code at its HEAD hard-codes. ``qv``: the query and value projections only, as its earliest
commits. A list names modules by their last name (``["q_proj", "v_proj"]``); every name must exist.
Attention modules are found by their class name (``...Attention``), so no architecture is hard-coded.
"""

from __future__ import annotations

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

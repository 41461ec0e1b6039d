"""The rules of the architecture fields (CONTRACT 5.6): GQA, tied embeddings, MoE and MLA.

Sizes first, then the cross-field checks that keep transformers from failing at build or
forward time (or from silently routing wrongly), then advice drawn from the published
DeepSeek-V2 models. Derived values come from :mod:`registry.document.architecture`, so a rule
sees exactly what the worker builds; a message names the derived value when the field is null.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from registry.document import architecture as arch
from registry.document.issues import Issue, Rule, RuleFunc, error, rule, warning

MOE, MLA = "model.moe", "model.mla"
#: Sizes and counts of the architecture fields: > 0 (or >= 0) and at most this.
SIZE_LIMITS: dict[str, float] = {
    "model.num_key_value_heads": 1_024,
    f"{MOE}.n_routed_experts": 4_096,
    f"{MOE}.num_experts_per_tok": 4_096,
    f"{MOE}.moe_intermediate_size": 1_048_576,
    f"{MOE}.n_group": 4_096,
    f"{MOE}.topk_group": 4_096,
    f"{MOE}.routed_scaling_factor": 1_000_000,
    f"{MLA}.q_lora_rank": 65_536,
    f"{MLA}.kv_lora_rank": 65_536,
    f"{MLA}.qk_nope_head_dim": 65_536,
    f"{MLA}.qk_rope_head_dim": 65_536,
    f"{MLA}.v_head_dim": 65_536,
}
#: Counts that may be zero: no shared expert; no dense layer before the experts.
COUNT_LIMITS: dict[str, int] = {
    f"{MOE}.n_shared_experts": 1_024,
    f"{MOE}.first_k_dense_replace": 1_024,
    f"{MOE}.aux_loss_alpha": 1,  # a weight: 0 is no balance loss; DeepSeek-V2 uses 0.003
}
_MOE_FIELDS = tuple(
    f"{MOE}.{k}"
    for k in ("n_routed_experts", "num_experts_per_tok", "topk_method", "n_group", "topk_group")
)


def value_at(doc: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of any depth; None where a part is absent or null."""
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _given(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The non-null fields the document itself sets in model.moe or model.mla."""
    return {k: v for k, v in (doc["model"].get(name) or {}).items() if v is not None}


def _shown(doc: dict[str, Any], path: str, value: Any) -> str:
    """``name (N)`` for a given value, ``name (N, derived)`` for a null one."""
    name = path.rsplit(".", 1)[-1]
    return f"{name} ({value})" if value_at(doc, path) is not None else f"{name} ({value}, derived)"


def _size_rule(path: str, limit: float, allow_zero: bool) -> RuleFunc:
    def check(doc: dict[str, Any]) -> Iterator[Issue]:
        value = value_at(doc, path)
        if value is None:
            return
        if value < 0 or (value == 0 and not allow_zero):
            what = "0 or more" if allow_zero else "positive"
            yield error(path, f"must be {what}, got {value}; null derives it")
        elif value > limit:
            yield error(path, f"{value} is too large; use at most {limit:,}")

    check.__name__ = check.__qualname__ = "size_" + path.replace(".", "_")
    check.__doc__ = f"{path} must be {'>= 0' if allow_zero else '> 0'} and <= {limit:,}."
    return check


SIZE_RULES: tuple[Rule, ...] = (
    *(rule(p)(_size_rule(p, limit, allow_zero=False)) for p, limit in SIZE_LIMITS.items()),
    *(rule(p)(_size_rule(p, limit, allow_zero=True)) for p, limit in COUNT_LIMITS.items()),
)


@rule("model.architecture", MOE, MLA)
def moe_and_mla_only_on_deepseek(doc: dict[str, Any]) -> Iterator[Issue]:
    """model.moe and model.mla describe DeepSeek-V2; Llama has neither."""
    if arch.model_type(doc) == "deepseek_v2":
        return
    for path, what in ((MOE, "mixture of experts"), (MLA, "latent attention")):
        given = _given(doc, path.rsplit(".", 1)[-1])
        if given:
            yield error(
                path,
                f"{', '.join(given)}: the {what} exists only in architecture deepseek_v2; "
                f"remove {path} or set model.architecture: deepseek_v2",
            )


@rule("model.architecture", "model.num_attention_heads", "model.num_key_value_heads")
def kv_heads_fit_heads(doc: dict[str, Any]) -> Iterator[Issue]:
    """Each key/value head serves a whole group of query heads; MLA has one per head."""
    kv, heads = doc["model"].get("num_key_value_heads"), doc["model"]["num_attention_heads"]
    if kv is None or kv == heads:
        return
    path = "model.num_key_value_heads"
    if arch.model_type(doc) == "deepseek_v2":
        yield error(
            path,
            f"deepseek_v2's latent attention gives each of the {heads} heads its own keys and "
            f"values, so {kv} key/value heads cannot be built; use null (the latent's size is "
            "model.mla.kv_lora_rank) or architecture llama for grouped-query attention",
        )
    elif heads % kv:
        fits = [str(k) for k in range(1, heads + 1) if heads % k == 0]
        yield error(
            path,
            f"num_attention_heads ({heads}) is not divisible by num_key_value_heads ({kv}); "
            f"use one of {', '.join(fits)}",
        )


@rule("model.model_dim", "model.intermediate_size", *_MOE_FIELDS)
def experts_per_token_fit(doc: dict[str, Any]) -> Iterator[Issue]:
    """A token cannot pass through more routed experts than there are."""
    m = arch.moe_settings(doc)
    k, n = m["num_experts_per_tok"], m["n_routed_experts"]
    if arch.model_type(doc) == "deepseek_v2" and k > n:
        yield error(
            f"{MOE}.num_experts_per_tok",
            f"{_shown(doc, f'{MOE}.num_experts_per_tok', k)} is more than "
            f"{_shown(doc, f'{MOE}.n_routed_experts', n)}; set it to at most {n}",
        )


@rule("model.model_dim", "model.intermediate_size", *_MOE_FIELDS)
def group_routing_complete(doc: dict[str, Any]) -> Iterator[Issue]:
    """group_limited_greedy splits the experts into n_group groups and keeps topk_group."""
    if arch.moe_settings(doc)["topk_method"] != "group_limited_greedy":
        return
    for name, hint in (("n_group", "e.g. 8, one per device"), ("topk_group", "e.g. 3")):
        if value_at(doc, f"{MOE}.{name}") is None:
            yield error(
                f"{MOE}.{name}",
                f"topk_method group_limited_greedy needs {name} ({hint}); "
                "or use topk_method: greedy",
            )


@rule("model.model_dim", "model.intermediate_size", *_MOE_FIELDS)
def group_sizes_fit(doc: dict[str, Any]) -> Iterator[Issue]:
    """Groups must split the experts evenly, and the kept groups must hold a token's experts."""
    m = arch.moe_settings(doc)
    groups, keep, n = m["n_group"], m["topk_group"], m["n_routed_experts"]
    if m["topk_method"] != "group_limited_greedy" or groups is None or keep is None:
        return
    if keep > groups:
        yield error(
            f"{MOE}.topk_group", f"{keep} is more than n_group ({groups}); use at most {groups}"
        )
    elif n % groups:
        fits = [str(g) for g in range(1, n + 1) if n % g == 0]
        yield error(
            f"{MOE}.n_group",
            f"{_shown(doc, f'{MOE}.n_routed_experts', n)} do not split into {groups} equal "
            f"groups (the router would group them wrongly); use one of {', '.join(fits)}",
        )
    elif m["num_experts_per_tok"] > keep * (n // groups):
        yield error(
            f"{MOE}.num_experts_per_tok",
            f"{m['num_experts_per_tok']} experts per token do not fit in the {keep} kept "
            f"groups of {n // groups} experts each; raise topk_group or lower it",
        )


@rule("model.model_dim", "model.intermediate_size", *_MOE_FIELDS)
def groups_only_for_group_routing(doc: dict[str, Any]) -> Iterator[Issue]:
    """transformers reads n_group and topk_group only for group_limited_greedy."""
    m = arch.moe_settings(doc)
    given = [k for k in ("n_group", "topk_group") if value_at(doc, f"{MOE}.{k}") is not None]
    if given and m["topk_method"] == "greedy":
        yield warning(
            f"{MOE}.{given[0]}",
            f"{' and '.join(given)} are ignored by topk_method greedy; set topk_method: "
            "group_limited_greedy to route within groups, or remove them",
        )
    elif given and m["topk_group"] is not None and m["topk_group"] == m["n_group"]:
        yield warning(
            f"{MOE}.topk_group",
            f"keeping all {m['n_group']} groups limits nothing (the same as greedy); "
            "DeepSeek-V2 keeps 3 of 8",
        )


@rule("model.architecture", "model.num_hidden_layers", f"{MOE}.first_k_dense_replace")
def dense_layers_fit(doc: dict[str, Any]) -> Iterator[Issue]:
    """first_k_dense_replace counts layers: at most num_hidden_layers."""
    first_k = value_at(doc, f"{MOE}.first_k_dense_replace")
    layers = doc["model"]["num_hidden_layers"]
    if first_k is None or arch.model_type(doc) != "deepseek_v2":
        return
    if first_k > layers:
        yield error(
            f"{MOE}.first_k_dense_replace",
            f"{first_k} dense layers is more than num_hidden_layers ({layers}); "
            f"use at most {layers} (DeepSeek-V2 keeps 1)",
        )
    elif first_k == layers:
        yield warning(
            f"{MOE}.first_k_dense_replace",
            f"all {layers} layers are dense, so no layer has experts and model.moe's other "
            "fields change nothing; lower it (DeepSeek-V2 keeps 1)",
        )


@rule(
    "model.architecture",
    "model.model_dim",
    "model.num_attention_heads",
    *(f"{MLA}.qk_{k}_head_dim" for k in ("nope", "rope")),
)
def rotary_dims_even(doc: dict[str, Any]) -> Iterator[Issue]:
    """RoPE pairs dimensions as complex numbers, so the rotary slice and the query head are even."""
    if arch.model_type(doc) != "deepseek_v2":
        yield from _llama_head_even(doc)
        return
    m = arch.mla_dims(doc)
    rope, nope = m["qk_rope_head_dim"], m["qk_nope_head_dim"]
    if rope % 2:
        yield error(
            f"{MLA}.qk_rope_head_dim",
            f"{rope} is odd; rotary position encoding rotates pairs of dimensions, use "
            f"{rope + 1} or {rope - 1 or 2} (DeepSeek-V2: 64)",
        )
    elif nope % 2:
        yield error(
            f"{MLA}.qk_nope_head_dim",
            f"{_shown(doc, f'{MLA}.qk_nope_head_dim', nope)} + qk_rope_head_dim ({rope}) is "
            f"odd; the query head must be even for the rotary split, use {nope + 1} "
            "(DeepSeek-V2: 128)",
        )


def _llama_head_even(doc: dict[str, Any]) -> Iterator[Issue]:
    # Llama rotates the whole head: transformers refuses an odd head_dim when it builds.
    dim, heads = doc["model"]["model_dim"], doc["model"]["num_attention_heads"]
    if dim % heads == 0 and (dim // heads) % 2:
        yield error(
            "model.num_attention_heads",
            f"model_dim / num_attention_heads = {dim // heads} is odd; Llama's rotary position "
            "encoding rotates pairs of dimensions of each head, so the head size must be even",
        )


#: The checks, in the order they run (after :data:`registry.document.rules.CHECKS`).
CHECKS: tuple[Rule, ...] = (
    *SIZE_RULES,
    moe_and_mla_only_on_deepseek,
    kv_heads_fit_heads,
    experts_per_token_fit,
    group_routing_complete,
    group_sizes_fit,
    dense_layers_fit,
    rotary_dims_even,
)


# -- advice from the published models --------------------------------------------------------


@rule("model.architecture", "model.model_dim", f"{MLA}.q_lora_rank", f"{MLA}.kv_lora_rank")
def latent_ranks_compress(doc: dict[str, Any]) -> Iterator[Issue]:
    """A latent rank at or above model_dim compresses nothing (DeepSeek-V2: 512, 1536 of 5120)."""
    dim, given = doc["model"]["model_dim"], _given(doc, "mla")
    if arch.model_type(doc) != "deepseek_v2":
        return
    for name, example in (("kv_lora_rank", "512 of 5120"), ("q_lora_rank", "1536 of 5120")):
        rank = given.get(name)
        if rank is not None and rank >= dim:
            yield warning(
                f"{MLA}.{name}",
                f"{rank} is not below model_dim ({dim}), so the latent compresses nothing and "
                f"only adds parameters; DeepSeek-V2 uses {example}"
                + ("; use null for no query compression" if name == "q_lora_rank" else ""),
            )


@rule("model.model_dim", "model.intermediate_size", *_MOE_FIELDS)
def experts_stay_sparse(doc: dict[str, Any]) -> Iterator[Issue]:
    """Routing a token through most experts loses the sparsity MoE is for (DeepSeek: 6 of 160)."""
    m = arch.moe_settings(doc)
    k, n = m["num_experts_per_tok"], m["n_routed_experts"]
    if arch.model_type(doc) == "deepseek_v2" and n < 2 * k and k <= n:
        yield warning(
            f"{MOE}.num_experts_per_tok",
            f"{k} of {n} routed experts per token is more than half: nearly dense compute "
            "for the memory of all experts; DeepSeek-V2 routes 6 of 160, V2-Lite 6 of 64",
        )


@rule(
    "model.architecture",
    "model.model_dim",
    "model.intermediate_size",
    f"{MOE}.moe_intermediate_size",
)
def experts_narrower_than_dense(doc: dict[str, Any]) -> Iterator[Issue]:
    """An expert is a slice of the dense FFN (DeepSeek-V2: 1536 of 12288)."""
    width = value_at(doc, f"{MOE}.moe_intermediate_size")
    dense = arch.resolve_intermediate_size(doc)
    if arch.model_type(doc) == "deepseek_v2" and width is not None and width > dense:
        yield warning(
            f"{MOE}.moe_intermediate_size",
            f"each expert ({width}) is wider than the dense FFN, intermediate_size ({dense}); "
            "experts are meant to be narrow slices (DeepSeek-V2: 1536 of 12288)",
        )


#: The architecture advice, in the order it runs (after :data:`registry.document.advice.ADVICE`).
ADVICE: tuple[Rule, ...] = (
    groups_only_for_group_routing,
    latent_ranks_compress,
    experts_stay_sparse,
    experts_narrower_than_dense,
)

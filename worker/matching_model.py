"""The image-caption matching model of ``task: multimodal_matching``, built with transformers.

Its parts and sizes are defined (and counted for the estimate) in
:mod:`registry.document.visual`: the document's own architecture as the text encoder, a ViT
as the visual encoder (none at all when ``multimodal.visual_encoder_weight`` is 0), the fusion
``w_v x v + w_t x t`` of the L2-normalised features, and a small MLP head that scores the fused
vector of one image and one caption.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from registry.document.architecture import PAD_ID, model_type
from registry.document.visual import has_visual_encoder, visual_sizes, vit_config_kwargs


class MatchingModel(nn.Module):
    """Scores every (image, caption) pair of a batch: ``scores(images, ids)`` is ``[B, C]``."""

    def __init__(self, text: nn.Module, visual: nn.Module | None, doc: Mapping[str, Any]):
        super().__init__()
        d = int(doc["model"]["model_dim"])
        self.visual_weight = float(doc["multimodal"]["visual_encoder_weight"])
        self.text_weight = float(doc["multimodal"]["text_encoder_weight"])
        self.text = text
        self.text_proj = nn.Linear(d, d, bias=False)
        self.visual = visual
        self.visual_proj = (
            None if visual is None else nn.Linear(visual_sizes(dict(doc))["hidden_size"], d, False)
        )
        self.head = nn.Linear(d, d)
        self.logit_scale = nn.Parameter(torch.tensor(2.3))

    def text_features(self, ids: torch.Tensor) -> torch.Tensor:
        """``[C, d]``: the mean of each caption's hidden states over its tokens (not padding)."""
        mask = (ids != PAD_ID).long()
        hidden = self.text(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        weights = mask[..., None].to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        return F.normalize(self.text_proj(pooled).float(), dim=-1)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, d]``: the mean of the ViT's output tokens (CLS and patches), projected."""
        if self.visual is None or self.visual_proj is None:
            raise RuntimeError("this matching model has no visual encoder (visual weight 0)")
        tokens = self.visual(pixel_values=images).last_hidden_state
        return F.normalize(self.visual_proj(tokens.mean(dim=1)).float(), dim=-1)

    def scores(self, images: torch.Tensor | None, ids: torch.Tensor, count: int) -> torch.Tensor:
        """``[count, C]`` scores of ``count`` images against C captions.

        Without a visual encoder ``images`` is None and the fused vector is ``w_t x t`` alone:
        every image gets the same row of scores, so no image can be told from another.
        """
        return self.scores_of(*self.features(images, ids), count)

    def features(
        self, images: torch.Tensor | None, ids: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The weighted features ``(w_v x v or None, w_t x t)`` that :meth:`scores_of`
        fuses; apart so that ranks can score gathered features (worker.distributed_tasks)."""
        text = self.text_weight * self.text_features(ids)
        if self.visual is None:
            return None, text
        if images is None:
            raise ValueError("a matching model with a visual encoder needs the images")
        return self.visual_weight * self.image_features(images), text

    def scores_of(self, image: torch.Tensor | None, text: torch.Tensor, count: int) -> torch.Tensor:
        """``[count, C]``: the head's score of every fused (image, caption) pair."""
        if image is None:
            return self._head(text)[None, :].expand(count, -1)
        return self._head(image[:, None, :] + text[None])

    def _head(self, fused: torch.Tensor) -> torch.Tensor:
        h = self.head(fused.to(self.head.weight.dtype)).float()
        return self.logit_scale.exp() * (h * h).sum(dim=-1)


def build_matcher(doc: Mapping[str, Any], vocab_size: int | None) -> MatchingModel:
    """A freshly initialised matching model for the document (nothing downloaded)."""
    from transformers import DeepseekV2Model, LlamaModel, ViTConfig, ViTModel

    from worker.model import checked_config, ready

    plain = dict(doc)
    backbones = {"deepseek_v2": DeepseekV2Model, "llama": LlamaModel}
    text = ready(backbones[model_type(plain)](checked_config(doc, vocab_size)), doc)
    visual = None
    if has_visual_encoder(plain):  # ready(): checkpointing as the text tower, if asked for
        visual = ready(
            ViTModel(ViTConfig(**vit_config_kwargs(plain)), add_pooling_layer=False), doc
        )
    return MatchingModel(text, visual, doc)

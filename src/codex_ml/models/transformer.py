"""A small decoder-only transformer (GPT) in one readable file.

The layout follows nanoGPT: a ``@dataclass`` config, pre-norm blocks
(LayerNorm -> causal self-attention -> residual, LayerNorm -> MLP -> residual),
positions either learned (a GPT-2 table added to the token embeddings) or rotary
(RoPE: queries and keys rotated by position inside attention), a final LayerNorm
and an output head whose weight is tied to the token embedding.

Shape legend used in comments: B = batch, T = sequence length,
C = embedding size (``n_embd``), H = heads, V = vocabulary size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from codex_ml.models.config import POSITIONS, ModelConfig

__all__ = ["GPT", "GPTConfig", "POSITIONS", "ModelConfig", "apply_rope", "rope_tables"]


@dataclass(kw_only=True)
class GPTConfig(ModelConfig):
    """:class:`~codex_ml.models.config.ModelConfig` (the shape, declared once) plus the vocabulary
    size; validated on construction."""

    vocab_size: int

    @classmethod
    def from_model(cls, model: ModelConfig, vocab_size: int) -> GPTConfig:
        """The config of a GPT with ``model``'s shape over a ``vocab_size`` vocabulary."""
        shape = {f.name: getattr(model, f.name) for f in dataclasses.fields(ModelConfig)}
        return cls(vocab_size=vocab_size, **shape)

    def __post_init__(self) -> None:
        """Reject impossible sizes early, naming the offending field."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            # bool is an int subclass; True as a layer count is almost surely a typo.
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        problems = self.problems()
        if problems:
            raise ValueError(f"GPTConfig.{problems[0]}")


def rope_tables(block_size: int, head_size: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position's rotation angles, each (block_size, head_size / 2)."""
    # Pair i of a head turns at frequency base^(-2i/head_size): fast pairs see nearby
    # tokens, slow pairs far ones (RoFormer, Su et al. 2021).
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)  # (hs/2,)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, hs) queries or keys by their positions; cos/sin are (T, hs/2).

    Pair i is (x[i], x[i + hs/2]), turned by its angle: (x1*cos - x2*sin, x1*sin + x2*cos).
    """
    half = x.shape[-1] // 2
    # The same numbers bit for bit as concatenating the two rotated halves, in fewer passes over x:
    # roll swaps the halves in one op (its backward is one roll), where slicing x1/x2 costs a
    # zero-filled full-size gradient per slice. Rotary positions made a train-model step ~17 %
    # slower than learned ones on CPU; this form removes about a third of that (issue 14).
    return x * torch.cat((cos, cos), dim=-1) + x.roll(half, dims=-1) * torch.cat((-sin, sin), dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees only itself and the past."""

    def __init__(self, config: GPTConfig) -> None:
        """Create the fused q/k/v projection and the output projection."""
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        # One matmul for q, k and v is faster than three small ones.
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Attend causally over ``x`` of shape (B, T, C); returns (B, T, C).

        ``rope`` is (cos, sin) for positions 0..T-1 when the model uses rotary positions.
        """
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        # (B, H, T, C/H); SDPA picks a fused kernel and applies the causal mask for us.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network: C -> 4C -> GELU -> C."""

    def __init__(self, config: GPTConfig) -> None:
        """Create the expansion and projection layers."""
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, T, C) to (B, T, C)."""
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One pre-norm transformer block: attention then MLP, each with a residual."""

    def __init__(self, config: GPTConfig) -> None:
        """Create the two LayerNorms, the attention and the MLP."""
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Map (B, T, C) to (B, T, C)."""
        # Pre-norm keeps the residual stream un-normalised, which trains stably without warmup tricks.
        x = x + self.attn(self.ln_1(x), rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer language model."""

    def __init__(self, config: GPTConfig) -> None:
        """Build the embeddings, the block stack and the tied output head."""
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        # Learned positions are a parameter table; rotary ones are fixed tables (buffers that
        # are rebuilt, not saved, so checkpoints hold only what training changes).
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position == "learned" else None
        if config.position == "rope":
            cos, sin = rope_tables(config.block_size, config.n_embd // config.n_head)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the same matrix reads tokens in and scores them out (fewer params, better LM).
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale residual projections so the residual stream's variance doesn't grow with depth.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """Normal(0, 0.02) for linear and embedding weights, zeros for biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """Number of trainable parameters; the tied head/embedding matrix counts once."""
        # parameters() de-duplicates shared tensors, so tying is handled for us.
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(logits, loss)`` for token ids ``idx`` of shape (B, T).

        ``logits`` has shape (B, T, V). ``loss`` is the mean cross entropy against
        ``targets`` (B, T) when given, else ``None``.
        """
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(
                f"sequence length {T} exceeds GPTConfig.block_size ({self.config.block_size})"
            )
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))  # + (T, C) broadcasts
        else:
            rope = (self.rope_cos[:T], self.rope_sin[:T])  # 2 x (T, C/H/2)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample ``max_new_tokens`` tokens after ``idx`` (B, T); returns (B, T + max_new_tokens).

        Only the last ``block_size`` tokens are fed back, as positions beyond that
        have no embedding. ``generator`` must live on ``idx``'s device. Call
        ``model.eval()`` first if the model uses dropout.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -self.config.block_size :]  # (B, <=block_size)
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :] / temperature  # (B, V): only the last position predicts
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]  # (B, 1)
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx

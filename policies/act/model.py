"""ACT: CVAE-trained transformer encoder-decoder predicting action chunks (Zhao et al. 2023)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from policies.act.config import ACTConfig
from policies.backbones import SpatialSoftmax, load_backbone_weights, make_backbone
from policies.features import ENV_STATE_KEY, STATE_KEY
from policies.interface import Policy
from policies.registry import register_policy


def sine_embedding_1d(length: int, dim: int) -> Tensor:
    """Fixed sinusoidal position embedding (Vaswani et al. 2017), shape (length, dim)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


def sine_embedding_2d(height: int, width: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """DETR-style 2-D sine embedding of a feature map, shape (height * width, dim): half for y, half for x."""
    half = dim // 2
    ys = torch.arange(1, height + 1, dtype=torch.float32) / height * 2 * math.pi
    xs = torch.arange(1, width + 1, dtype=torch.float32) / width * 2 * math.pi
    dim_t = temperature ** (2 * (torch.arange(half, dtype=torch.float32) // 2) / half)
    pos_y = ys[:, None] / dim_t  # (h, half)
    pos_x = xs[:, None] / dim_t  # (w, half)
    pos_y = torch.stack([pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()], dim=2).flatten(1)
    pos_x = torch.stack([pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()], dim=2).flatten(1)
    grid = torch.cat(
        [pos_y[:, None, :].expand(height, width, -1), pos_x[None, :, :].expand(height, width, -1)], dim=2
    )
    return grid.reshape(height * width, dim)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float, activation: str):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)
        self.activation = nn.ReLU() if activation == "relu" else nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class Attention(nn.Module):
    """Multi-head attention from four projections and F.scaled_dot_product_attention.

    Written here rather than nn.MultiheadAttention, whose Python-side argument handling is a large share of ACT's
    per-chunk CPU budget (benchmarks/README.md).
    """

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def _heads(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """(B, Lq, D), (B, Lk, D), (B, Lk, D); key_padding_mask (B, Lk) True where a key must be ignored."""
        return self.attend(self.project_queries(query), key, value, key_padding_mask)

    def project_queries(self, query: Tensor) -> Tensor:
        """Queries (B, Lq, D) -> projected, split into heads (B, n_heads, Lq, head_dim)."""
        return self._heads(self.q_proj(query))

    def attend(self, q: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """Attention of already projected queries `q` (B, n_heads, Lq, head_dim) over key/value (B, Lk, D)."""
        k, v = self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1))

    def uniform_value_output(self, value_row: Tensor) -> Tensor:
        """Output when every value row equals `value_row` (B, 1, D): attention weights sum to one, so it is this."""
        return self.out_proj(self.v_proj(value_row))


class EncoderLayer(nn.Module):
    """Self-attention block; the position embedding is added to queries and keys at every layer (DETR style),
    which nn.TransformerEncoderLayer cannot do -- hence written here."""

    def __init__(self, c: ACTConfig):
        super().__init__()
        self.self_attn = Attention(c.dim_model, c.n_heads, c.dropout)
        self.ff = FeedForward(c.dim_model, c.dim_feedforward, c.dropout, c.feedforward_activation)
        self.norm1 = nn.LayerNorm(c.dim_model)
        self.norm2 = nn.LayerNorm(c.dim_model)
        self.dropout1 = nn.Dropout(c.dropout)
        self.dropout2 = nn.Dropout(c.dropout)
        self.pre_norm = c.pre_norm

    def forward(self, x: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        h = self.norm1(x) if self.pre_norm else x
        qk = h + pos
        x = x + self.dropout1(self.self_attn(qk, qk, h, key_padding_mask))
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        x = x + self.dropout2(self.ff(h))
        return x if self.pre_norm else self.norm2(x)


class DecoderLayer(nn.Module):
    """Self-attention over the action queries, then cross-attention to the encoded observation tokens."""

    def __init__(self, c: ACTConfig):
        super().__init__()
        self.self_attn = Attention(c.dim_model, c.n_heads, c.dropout)
        self.cross_attn = Attention(c.dim_model, c.n_heads, c.dropout)
        self.ff = FeedForward(c.dim_model, c.dim_feedforward, c.dropout, c.feedforward_activation)
        self.norm1 = nn.LayerNorm(c.dim_model)
        self.norm2 = nn.LayerNorm(c.dim_model)
        self.norm3 = nn.LayerNorm(c.dim_model)
        self.dropout1 = nn.Dropout(c.dropout)
        self.dropout2 = nn.Dropout(c.dropout)
        self.dropout3 = nn.Dropout(c.dropout)
        self.pre_norm = c.pre_norm

    def self_attention_block(self, x: Tensor, query_pos: Tensor, identical_rows: bool = False) -> Tensor:
        """Self-attention over the action queries (with its residual and, post-norm, its LayerNorm).

        identical_rows: all rows of x are equal (the first layer gets zeros), so all value rows are too and
        self-attention returns that one value whatever its weights: the chunk x chunk attention and the q/k
        projections are skipped, and (unless dropout acts) the result is a single row (B, 1, D) that broadcasts.
        """
        h = self.norm1(x) if self.pre_norm else x
        if identical_rows:
            attended = self.self_attn.uniform_value_output(h[:, :1])
            if self.training and self.dropout1.p > 0:
                # Dropout draws a mask per row, after which the rows differ: expand first, as without the shortcut.
                x = x + self.dropout1(attended.expand(-1, query_pos.shape[1], -1))
            else:
                x = x[:, :1] + attended
        else:
            qk = h + query_pos
            x = x + self.dropout1(self.self_attn(qk, qk, h))
        return x if self.pre_norm else self.norm1(x)

    def cross_queries(self, x: Tensor, query_pos: Tensor) -> Tensor:
        """Projected cross-attention queries (B, n_heads, chunk, head_dim) for the state x after self-attention."""
        h = self.norm2(x) if self.pre_norm else x
        return self.cross_attn.project_queries(h + query_pos)

    def forward(
        self,
        x: Tensor,
        query_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        identical_rows: bool = False,
        prepared: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """prepared: (x after self-attention, cross_queries(x, query_pos)) when the caller already has them."""
        if prepared is None:
            x = self.self_attention_block(x, query_pos, identical_rows)
            queries = self.cross_queries(x, query_pos)
        else:
            x, queries = prepared
        x = x + self.dropout2(self.cross_attn.attend(queries, memory + memory_pos, memory))
        if not self.pre_norm:
            x = self.norm2(x)
        h = self.norm3(x) if self.pre_norm else x
        x = x + self.dropout3(self.ff(h))
        return x if self.pre_norm else self.norm3(x)


class ACTNetwork(nn.Module):
    """The ACT network in normalized space; knows feature sizes, not dataset keys."""

    def __init__(self, c: ACTConfig, state_dim: int, env_state_dim: int, camera_shapes: list[tuple[int, int, int]],
                 action_dim: int):
        super().__init__()  # at least one observation: PolicyConfig.features_ready checked it
        self.config = c
        d = c.dim_model
        self.state_dim, self.env_state_dim, self.action_dim = state_dim, env_state_dim, action_dim
        self.n_cameras = len(camera_shapes)

        if c.use_vae:
            self.vae_cls = nn.Embedding(1, d)
            self.vae_state_proj = nn.Linear(state_dim, d) if state_dim else None
            self.vae_action_proj = nn.Linear(action_dim, d)
            self.vae_layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_vae_encoder_layers))
            self.vae_latent_head = nn.Linear(d, 2 * c.latent_dim)
            n_vae_tokens = 1 + (1 if state_dim else 0) + c.chunk_size
            self.register_buffer("vae_pos", sine_embedding_1d(n_vae_tokens, d)[None], persistent=False)

        self.latent_proj = nn.Linear(c.latent_dim, d)
        self.state_proj = nn.Linear(state_dim, d) if state_dim else None
        self.env_state_proj = nn.Linear(env_state_dim, d) if env_state_dim else None
        n_1d_tokens = 1 + (1 if state_dim else 0) + (1 if env_state_dim else 0)
        self.token_pos = nn.Embedding(n_1d_tokens, d)
        self.image_tokens = c.image_tokens
        if camera_shapes:
            self.backbone = make_backbone(c.vision_backbone, camera_shapes[0][0], c.backbone_norm)
            if c.image_tokens == "grid":
                self.image_proj = nn.Conv2d(self.backbone.out_channels, d, 1)
                for i, shape in enumerate(camera_shapes):
                    _, fh, fw = self.backbone.output_shape(shape)
                    self.register_buffer(f"image_pos_{i}", sine_embedding_2d(fh, fw, d)[None], persistent=False)
            else:
                k = c.spatial_softmax_num_keypoints
                # One spatial softmax per camera (each has its own grid size), a shared (x, y) -> d projection, and a
                # learned embedding per (camera, keypoint) as the token's position.
                self.keypoints = nn.ModuleList(
                    SpatialSoftmax(self.backbone.out_channels, *self.backbone.output_shape(shape)[1:], k)
                    for shape in camera_shapes)
                self.keypoint_proj = nn.Linear(2, d)
                self.keypoint_pos = nn.Embedding(k * len(camera_shapes), d)

        self.encoder_layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_encoder_layers))
        self.encoder_norm = nn.LayerNorm(d) if c.pre_norm else nn.Identity()
        self.query_pos = nn.Embedding(c.chunk_size, d)
        self.decoder_layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, action_dim)
        self._query_cache: tuple | None = None  # see _first_decoder_queries; a plain attribute, not in the state dict
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("backbone."):
                nn.init.xavier_uniform_(p)

    def encode_latent(self, state: Tensor | None, actions: Tensor, action_is_pad: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior (mu, log sigma^2) of the style latent from [CLS, state, action chunk] tokens."""
        b = actions.shape[0]
        tokens = [self.vae_cls.weight[None].expand(b, -1, -1)]
        if self.vae_state_proj is not None:
            tokens.append(self.vae_state_proj(state)[:, None])
        tokens.append(self.vae_action_proj(actions))
        x = torch.cat(tokens, dim=1)
        n_prefix = x.shape[1] - actions.shape[1]
        mask = torch.cat([torch.zeros(b, n_prefix, dtype=torch.bool, device=x.device), action_is_pad], dim=1)
        for layer in self.vae_layers:
            x = layer(x, self.vae_pos, key_padding_mask=mask)
        mu, log_sigma_x2 = self.vae_latent_head(x[:, 0]).chunk(2, dim=-1)
        return mu, log_sigma_x2

    def forward(self, state: Tensor | None, env_state: Tensor | None, images: list[Tensor], latent: Tensor) -> Tensor:
        """(B, S), (B, E), [(B, C, H, W)] normalized, latent (B, latent_dim) -> normalized actions (B, chunk, A)."""
        tokens = [self.latent_proj(latent)[:, None]]
        if self.state_proj is not None:
            tokens.append(self.state_proj(state)[:, None])
        if self.env_state_proj is not None:
            tokens.append(self.env_state_proj(env_state)[:, None])
        b = latent.shape[0]
        pos = [self.token_pos.weight[None].expand(b, -1, -1)]
        for i, image in enumerate(images):
            if self.image_tokens == "grid":
                fmap = self.image_proj(self.backbone(image))  # (B, d, h, w)
                tokens.append(fmap.flatten(2).transpose(1, 2))
                pos.append(getattr(self, f"image_pos_{i}").expand(b, -1, -1))
            else:
                points = self.keypoints[i](self.backbone(image)).view(b, -1, 2)  # (B, K, 2): x, y in [-1, 1]
                tokens.append(self.keypoint_proj(points))
                k = points.shape[1]
                pos.append(self.keypoint_pos.weight[None, i * k:(i + 1) * k].expand(b, -1, -1))
        x = torch.cat(tokens, dim=1)
        pos_all = torch.cat(pos, dim=1)
        for layer in self.encoder_layers:
            x = layer(x, pos_all)
        memory = self.encoder_norm(x)

        query_pos = self.query_pos.weight[None]
        y, queries = self._first_decoder_queries(b)
        queries = queries.expand(b, -1, -1, -1)  # unconditional, so a traced graph keeps the batch size symbolic
        y = self.decoder_layers[0](y, query_pos, memory, pos_all, prepared=(y, queries))
        for layer in self.decoder_layers[1:]:
            y = layer(y, query_pos, memory, pos_all)
        return self.action_head(self.decoder_norm(y))

    def _first_decoder_queries(self, batch: int) -> tuple[Tensor, Tensor]:
        """The first decoder layer up to its cross-attention: state after self-attention (1, 1, D) and the projected
        cross-attention queries (1, n_heads, chunk, head_dim); batch rows instead of 1 when training with dropout.

        The decoder input is zero (DETR), so both depend on the weights alone: at inference they are cached until a
        weight's version counter changes. Training, autograd and graph capture take the plain path.
        """
        layer = self.decoder_layers[0]
        query_pos = self.query_pos.weight[None]
        params = self._query_side_params()
        # Inference tensors (parameters created under torch.inference_mode) have no version counter.
        cacheable = not (self.training or torch.is_grad_enabled() or torch.compiler.is_compiling()
                         or torch.jit.is_tracing() or params[0].is_inference())
        if cacheable:
            key = tuple((p.data_ptr(), p._version) for p in params)
            if self._query_cache is not None and self._query_cache[0] == key:
                return self._query_cache[1]
        # Dropout after the self-attention draws one mask per sample: then the batch needs its own rows.
        rows = batch if self.training and layer.dropout1.p > 0 else 1
        zeros = torch.zeros(rows, 1, query_pos.shape[-1], dtype=query_pos.dtype, device=query_pos.device)
        y = layer.self_attention_block(zeros, query_pos, identical_rows=True)
        out = (y, layer.cross_queries(y, query_pos))
        if cacheable:
            self._query_cache = (key, out)
        return out

    def _query_side_params(self) -> list[Tensor]:
        layer = self.decoder_layers[0]
        modules = (layer.norm1, layer.norm2, layer.self_attn.v_proj, layer.self_attn.out_proj, layer.cross_attn.q_proj)
        return [self.query_pos.weight] + [p for m in modules for p in m.parameters(recurse=False)]


@register_policy("act")
class ACTPolicy(Policy):
    config_class = ACTConfig

    def __init__(self, config: ACTConfig, stats: Mapping[str, Any] | None = None):
        super().__init__(config, stats)
        shapes = [self.input_specs[k].shape for k in self.image_keys]
        if len(set(s[0] for s in shapes)) > 1:
            raise ValueError(
                f"ACT shares one backbone across cameras; channel counts differ: {dict(zip(self.image_keys, shapes))}"
            )
        self.network = ACTNetwork(
            config,
            state_dim=self.input_specs[STATE_KEY].shape[0] if self.has_state else 0,
            env_state_dim=self.input_specs[ENV_STATE_KEY].shape[0] if self.has_env_state else 0,
            camera_shapes=shapes,
            action_dim=self.action_dim,
        )

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.config.chunk_size))

    def _network_inputs(self, obs: dict[str, Tensor]) -> tuple[Tensor | None, Tensor | None, list[Tensor]]:
        # ACT reads only the current step: the last entry of the (length-1) observation window.
        state = obs[STATE_KEY][:, -1] if self.has_state else None
        env_state = obs[ENV_STATE_KEY][:, -1] if self.has_env_state else None
        return state, env_state, [obs[k][:, -1] for k in self.image_keys]

    def predict_normalized_chunk(self, observations: dict[str, Tensor]) -> Tensor:
        state, env_state, images = self._network_inputs(observations)
        ref = next(iter(observations.values()))
        latent = torch.zeros(ref.shape[0], self.config.latent_dim, dtype=torch.float32, device=ref.device)
        return self.network(state, env_state, images, latent)

    def compute_loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        obs = self.prepare_observations(batch)
        actions, is_pad = self.prepare_actions(batch)
        state, env_state, images = self._network_inputs(obs)
        b = actions.shape[0]
        if self.config.use_vae:
            mu, log_sigma_x2 = self.network.encode_latent(state, actions, is_pad)
            if self.training:
                latent = mu + torch.exp(0.5 * log_sigma_x2) * torch.randn_like(mu)
            else:
                latent = mu  # deterministic validation loss
            # KL(q(z|s,a) || N(0, I)), summed over latent dims, averaged over the batch.
            kld = (-0.5 * (1 + log_sigma_x2 - mu.pow(2) - log_sigma_x2.exp())).sum(-1).mean()
        else:
            latent = torch.zeros(b, self.config.latent_dim, device=actions.device)
            kld = torch.zeros((), device=actions.device)
        predicted = self.network(state, env_state, images, latent)
        valid = (~is_pad).unsqueeze(-1).to(predicted.dtype)
        l1 = (F.l1_loss(predicted, actions, reduction="none") * valid).sum()
        l1 = l1 / (valid.sum() * self.action_dim).clamp_min(1)  # mean over real (unpadded) action entries
        loss = l1 + self.config.kl_weight * kld
        return loss, {"l1_loss": l1.detach(), "kld_loss": kld.detach(), "loss": loss.detach()}

    def load_pretrained_weights(self) -> None:
        path = self.config.pretrained_backbone_weights
        if path is None:
            return
        if not self.image_keys:
            raise ValueError(f"ACT: pretrained_backbone_weights={path!r} given but the policy has no camera input")
        load_backbone_weights(self.network.backbone, path)

    def optim_param_groups(self) -> list[dict[str, Any]]:
        backbone, rest = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (backbone if name.startswith("network.backbone.") else rest).append(p)
        decay = self.config.optimizer_weight_decay
        groups = [{"params": rest, "lr": self.config.optimizer_lr, "weight_decay": decay}]
        if backbone:
            groups.append({"params": backbone, "lr": self.config.optimizer_lr_backbone, "weight_decay": decay})
        return groups


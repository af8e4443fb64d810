"""The Recurrent Memory Transformer (Bulatov, Kuratov & Burtsev 2022): a transformer run segment by segment,
with memory tokens that carry what it needs from one segment to the next.

It lives with the blocks because it is built from them (a stack of residual attention blocks), and registers
itself as the mixer "rmt" when rnnzoo.blocks is imported (which ``import rnnzoo`` does).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rnnzoo.blocks.residual import ResidualBlock
from rnnzoo.blocks.stack import Stack, StackState
from rnnzoo.mixers.base import Mixer, check_int
from rnnzoo.mixers.registry import build_mixer, register_mixer
from rnnzoo.mixers.state import reset_state
from rnnzoo.ops.loop import segment_sizes


class RMTState(NamedTuple):
    memory: torch.Tensor  # (B, n_mem, d_model): the memory the current segment read
    backbone: StackState  # the backbone's KV caches over [read memory | the segment so far]
    seg_pos: torch.Tensor  # (B,) long: tokens of the current segment seen so far
    segments: torch.Tensor  # (B,) long: segments finished so far


@register_mixer("rmt", "Recurrent Memory Transformer (Bulatov et al. 2022): a transformer over segments, memory "
                       "tokens carried from each segment's end to the next segment's start")
class RecurrentMemoryTransformer(Mixer):
    """A causal transformer backbone (``backbone_layers`` pre-norm blocks of attention and a 4x MLP) run over
    segments of ``segment_len`` tokens. Segment s is read as [M_s | x_1 .. x_L | M_s]: the first copy of the
    memory (read tokens) is attended by every token of the segment, the second copy (write tokens) comes after
    the segment and attends to all of it, and the backbone's outputs there, through the final LayerNorm, are the
    next memory, M_{s+1}. The first segment reads learned memory embeddings. y_t is the backbone's output at
    token t, through the same LayerNorm. The norm matters: the raw outputs are a residual stream, each segment
    adds to its memory, and carried through a long text the memory (and ARMT's store, written from it) grew
    without bound until training turned to NaN.

    The state holds the memory, the backbone's KV caches of the current segment and the place in it, so a
    sequence processed in pieces, or one token at a time, gives the outputs of one call. ``bptt_segments``: the
    memory handed on is detached after every that many segments (truncated backpropagation through segments;
    None keeps the whole graph). Options: ``backbone_layers`` (2), ``n_heads``, ``n_mem`` (4), ``segment_len``
    (64), ``bptt_segments``.
    """

    def __init__(self, d_model: int, backbone_layers: int = 2, n_heads: int | None = None, n_mem: int = 4,
                 segment_len: int = 64, bptt_segments: int | None = None):
        name = "rmt"
        for opt, value in (("backbone_layers", backbone_layers), ("n_mem", n_mem), ("segment_len", segment_len)):
            check_int(name, opt, value)
        if bptt_segments is not None:
            check_int(name, "bptt_segments", bptt_segments)
        super().__init__(d_model)
        self.n_mem, self.segment_len, self.bptt_segments = n_mem, segment_len, bptt_segments
        span = 2 * n_mem + segment_len  # read memory, the segment, write memory
        self.backbone = Stack([ResidualBlock(build_mixer("transformer", d_model, n_heads=n_heads, max_len=span))
                               for _ in range(backbone_layers)])
        self.memory_init = nn.Parameter(torch.randn(n_mem, d_model) * d_model ** -0.5)
        self.norm = nn.LayerNorm(d_model)

    def init_state(self, batch_size, device=None, dtype=None) -> RMTState:
        dtype = dtype or self.memory_init.dtype
        # in the graph, so that the learned first memory trains
        memory = self.memory_init.to(device=device, dtype=dtype).expand(batch_size, -1, -1)  # (B, n_mem, d)
        zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
        return RMTState(memory, self.backbone.init_state(batch_size, device, dtype), zeros, zeros)

    def _backbone(self, h, backbone: StackState, state) -> tuple[torch.Tensor, StackState, list]:
        """h (B, n, d) through the backbone from its caches -> y (B, n, d), the caches, the layers' inputs."""
        y, backbone = self.backbone(h, backbone)
        return y, backbone, []

    def _read(self, state, memory: torch.Tensor, rows: torch.Tensor) -> StackState:
        """The backbone with a fresh cache that has read ``memory`` (the read tokens) in the rows (bool (B,))."""
        fresh = self.backbone.init_state(rows.shape[0], memory.device, memory.dtype)
        _, read, _ = self._backbone(memory, fresh, state)
        return read if bool(rows.all()) else reset_state(state.backbone, rows, read)

    def _read_first(self, state: RMTState) -> RMTState:
        """A state from init_state has not read its memory yet; every later segment reads it when the previous
        one ends (so that the state between segments already holds the read)."""
        unread = (state.segments == 0) & (state.seg_pos == 0)
        if not bool(unread.any()):
            return state
        return state._replace(backbone=self._read(state, state.memory, unread))

    def _forward(self, x, state):
        if bool((state.seg_pos != state.seg_pos[0]).any()):
            return self._forward_by_steps(x, state)  # rows at different places in their segments
        ys = []
        for piece in x.split(segment_sizes(x.shape[1], int(state.seg_pos[0]), self.segment_len), dim=1):
            state = self._read_first(state)
            y, backbone, _ = self._backbone(piece, state.backbone, state)  # (B, n, d)
            ys.append(self.norm(y))
            state = self._write(state._replace(backbone=backbone, seg_pos=state.seg_pos + piece.shape[1]))
        return torch.cat(ys, dim=1), state

    def _step(self, x_t, state):
        state = self._read_first(state)
        y, backbone, _ = self._backbone(x_t.unsqueeze(1), state.backbone, state)  # (B, 1, d)
        return self.norm(y[:, 0]), self._write(state._replace(backbone=backbone, seg_pos=state.seg_pos + 1))

    def _write(self, state: RMTState) -> RMTState:
        """Rows whose segment is complete run the write tokens, keep their outputs as the next memory and
        start a new segment: a fresh backbone that has read the new memory."""
        ended = state.seg_pos == self.segment_len  # (B,)
        if not bool(ended.any()):
            return state
        written, _, inputs = self._backbone(state.memory, state.backbone, state)  # (B, n_mem, d): write tokens
        written = self.norm(written)
        state = self._store(state, inputs, ended)
        segments = state.segments + ended.long()
        if self.bptt_segments is not None:
            cut = ended & (segments % self.bptt_segments == 0)
            written = torch.where(cut[:, None, None], written.detach(), written)
            state = self._cut(state, cut)
        memory = torch.where(ended[:, None, None], written, state.memory)
        return state._replace(memory=memory, backbone=self._read(state, memory, ended),
                              seg_pos=torch.where(ended, torch.zeros_like(state.seg_pos), state.seg_pos),
                              segments=segments)

    def _store(self, state, inputs: list, ended: torch.Tensor):
        """What a subclass keeps from the write tokens' inputs to each layer at a segment end; RMT keeps none."""
        return state

    def _cut(self, state, rows: torch.Tensor):
        """Detach, in the rows (bool (B,)), whatever a subclass carries besides the memory tokens."""
        return state

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, n_mem={self.n_mem}, segment_len={self.segment_len}, "
                f"bptt_segments={self.bptt_segments}")


class ARMTState(NamedTuple):
    memory: torch.Tensor  # (B, n_mem, d_model)
    backbone: StackState
    seg_pos: torch.Tensor  # (B,) long
    segments: torch.Tensor  # (B,) long
    A: torch.Tensor  # (B, backbone_layers, F, d_model): each layer's associative memory, F = 2 d_key nu
    z: torch.Tensor  # (B, backbone_layers, F): its normaliser


def dpfp(x: torch.Tensor, nu: int) -> torch.Tensor:
    """Deterministic parameter-free projection (Schlag et al. 2021): r = relu([x, -x]), then the products
    r_i r_{i+j} for j = 1 .. nu (indices cyclic), so (..., d) -> (..., 2 d nu), non-negative."""
    r = torch.relu(torch.cat([x, -x], dim=-1))  # (..., 2d)
    return torch.cat([r * r.roll(j, dims=-1) for j in range(1, nu + 1)], dim=-1)


@register_mixer("armt", "Associative Recurrent Memory Transformer (Rodkin et al. 2024): RMT plus a per-layer "
                        "associative memory written from the memory tokens with the delta rule")
class AssociativeRecurrentMemoryTransformer(RecurrentMemoryTransformer):
    """RMT with an associative memory per layer (Rodkin, Kuratov, Bulatov & Burtsev 2024). Layer l keeps a matrix
    A_l (F, d) and a normaliser z_l (F,), with phi = DPFP-nu on keys of width ``d_key``:

        read, every token h at layer l's input:  h <- h + A_l^T phi(W_q h) / (z_l . phi(W_q h) + 1)
        write, at a segment's end, for each write token m (layer l's input there), in order:
            k = phi(W_k m), v = W_v m, beta = sigmoid(w_b . m)
            v_old = A_l^T k / (z_l . k + 1)                         (what the memory returns for k now)
            A_l <- A_l + beta k (v - v_old)^T                       (the delta rule)
            z_l <- z_l + max(0, 1 - z_l . k / (|k|^2 + 1)) k        (count each key direction once)

    The paper divides by the normaliser plus a tiny epsilon; rnnzoo adds 1 (see EPS), which keeps recall of a
    stored key within |k|^2 / (|k|^2 + 1) of exact (DPFP keys have |k|^2 of order d_key nu). The memory is fixed
    inside a segment, so reads are per token and pieces or steps give one call's outputs.
    Options: those of ``rmt`` plus ``d_key`` (default 16) and ``nu`` (DPFP's order, default 3).
    """

    # added to every normaliser: a read along a direction the memory has barely seen stays small instead of
    # dividing two tiny numbers (with 1e-6 the outputs' derivatives reached ~1e6 and gradcheck failed)
    EPS = 1.0

    def __init__(self, d_model: int, backbone_layers: int = 2, n_heads: int | None = None, n_mem: int = 4,
                 segment_len: int = 64, bptt_segments: int | None = None, d_key: int = 16, nu: int = 3):
        check_int("armt", "d_key", d_key)
        check_int("armt", "nu", nu)
        super().__init__(d_model, backbone_layers, n_heads, n_mem, segment_len, bptt_segments)
        self.d_key, self.nu = d_key, nu
        self.features = 2 * d_key * nu
        self.q_proj = nn.ModuleList(nn.Linear(d_model, d_key, bias=False) for _ in range(backbone_layers))
        self.k_proj = nn.ModuleList(nn.Linear(d_model, d_key, bias=False) for _ in range(backbone_layers))
        self.v_proj = nn.ModuleList(nn.Linear(d_model, d_model, bias=False) for _ in range(backbone_layers))
        self.b_proj = nn.ModuleList(nn.Linear(d_model, 1) for _ in range(backbone_layers))

    def init_state(self, batch_size, device=None, dtype=None) -> ARMTState:
        base = super().init_state(batch_size, device, dtype)
        dtype = base.memory.dtype
        L, F = len(self.backbone.layers), self.features
        return ARMTState(*base, torch.zeros(batch_size, L, F, self.d_model, device=device, dtype=dtype),
                         torch.zeros(batch_size, L, F, device=device, dtype=dtype))

    def _backbone(self, h, backbone, state):
        inputs, caches = [], []
        for i, (layer, cache) in enumerate(zip(self.backbone.layers, backbone.layers)):
            inputs.append(h)
            q = dpfp(self.q_proj[i](h), self.nu)  # (B, n, F)
            read = q @ state.A[:, i] / ((q * state.z[:, i, None, :]).sum(-1, keepdim=True) + self.EPS)  # (B, n, d)
            h, cache = layer(h + read, cache)
            caches.append(cache)
        return h, StackState(tuple(caches)), inputs

    def _store(self, state, inputs, ended):
        A, z = state.A, state.z
        new_A, new_z = [], []
        for i, m in enumerate(inputs):  # m (B, n_mem, d): the write tokens at layer i's input
            k, v = dpfp(self.k_proj[i](m), self.nu), self.v_proj[i](m)  # (B, n_mem, F), (B, n_mem, d)
            beta = torch.sigmoid(self.b_proj[i](m))  # (B, n_mem, 1)
            A_i, z_i = A[:, i], z[:, i]  # (B, F, d), (B, F)
            for k_j, v_j, b_j in zip(k.unbind(1), v.unbind(1), beta.unbind(1)):
                kz = (k_j * z_i).sum(-1, keepdim=True)  # (B, 1)
                v_old = (k_j.unsqueeze(1) @ A_i).squeeze(1) / (kz + self.EPS)  # (B, d)
                A_i = A_i + (b_j * k_j).unsqueeze(-1) * (v_j - v_old).unsqueeze(1)
                gamma = (1 - kz / ((k_j * k_j).sum(-1, keepdim=True) + self.EPS)).clamp_min(0)  # (B, 1)
                z_i = z_i + gamma * k_j
            new_A.append(A_i)
            new_z.append(z_i)
        keep = ended.reshape(-1, 1, 1, 1)
        return state._replace(A=torch.where(keep, torch.stack(new_A, dim=1), A),
                              z=torch.where(keep[..., 0], torch.stack(new_z, dim=1), z))

    def _cut(self, state, rows):
        return state._replace(A=torch.where(rows[:, None, None, None], state.A.detach(), state.A),
                              z=torch.where(rows[:, None, None], state.z.detach(), state.z))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, d_key={self.d_key}, nu={self.nu}"

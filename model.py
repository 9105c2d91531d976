"""
model.py — GPT-2 in nanoGPT's names, its KV-cached batched sampler, the batch layouts the trainer
feeds it. train_gpt.py trains it (runs.py writes its checkpoints, bench.py times it); nothing here
knows about tasks, teachers or losses.

    x = wte(idx) + wpe(pos);  x += attn(ln_1(x));  x += mlp(ln_2(x));  logits = lm_head(ln_f(x))
    attention: softmax(q kᵀ / √d + mask) v, causal, pad keys masked;  lm_head.weight = wte.weight
    sampling:  y_t ~ softmax(logits_t / temperature), top-k optional, EOT held once emitted

Simplifications: 1. learned positions (GPT-2's wpe), counted per row from its first real token, so
a left-padded row computes what it computes unpadded; 2. no dropout, no biases (nanoGPT's
bias=False); 3. the KV cache is one preallocated tensor per layer and a position pointer; 4. the
naive full recompute (use_cache=False) is kept as the reference the cache is tested against.

Use:  model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128));  logits = model(idx)  # (B, T, V)
      tokens, logps = sample(model, prompt, 128, n_pad, temperature=1.0, gen=torch.Generator())
      resp, mask = generate_responses(model, [[ids], ...], 64, stop_id)  # variable-length contexts
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

BLOCK_SIZE = 1024  # positions: GPT-2's context; the longest teacher context + response must fit
# (n_layer, n_head, n_embd): micro for tests; tiny fits the CPU quickstart; small is nanoGPT's
# shakespeare-char size; gpt2 is GPT-2 small (124M with its 50k vocabulary, ~85M with 257 tokens).
PRESETS = {"micro": (2, 2, 32), "tiny": (4, 4, 128), "small": (6, 6, 384), "gpt2": (12, 12, 768)}


@dataclass
class GPTConfig:
    vocab_size: int = 257  # tokens (the byte tokenizer's 256 bytes + end-of-text)
    block_size: int = BLOCK_SIZE  # most positions a sequence may have
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # residual stream width


# -----------------------------------------------------------------------------
# The model


class KVCache:
    """Preallocated keys and values, one (2, B, n_head, max_len, head_dim) tensor per layer allocated on
    first use in the keys' dtype, and a position pointer `pos` (tokens already cached)."""

    def __init__(self, n_layer, max_len):
        self.kv, self.max_len, self.pos = [None] * n_layer, max_len, 0
        self.keep = self.positions = None

    def update(self, layer, k, v):
        """Store k, v (B, nh, T, hs) at positions pos..pos+T; return all keys/values so far."""
        if self.kv[layer] is None:
            B, nh, _, hs = k.shape
            self.kv[layer] = torch.empty(2, B, nh, self.max_len, hs, dtype=k.dtype, device=k.device)
        t1 = self.pos + k.shape[2]
        self.kv[layer][0, :, :, self.pos : t1] = k
        self.kv[layer][1, :, :, self.pos : t1] = v
        return self.kv[layer][0, :, :, :t1], self.kv[layer][1, :, :, :t1]

    def decode_view(self, n_pad, B, device):
        """(positions (B, 1), keep-mask (B, 1, 1, pos+1)) of a one-token step at `pos`, sliced from ones
        built once: the new token sees every non-pad key, as positions_and_mask builds it (tested)."""
        if self.keep is None:
            n_pad = torch.zeros(B, dtype=torch.long, device=device) if n_pad is None else n_pad
            k = torch.arange(self.max_len, device=device)
            self.keep = (k[None] >= n_pad[:, None])[:, None, None]  # (B, 1, 1, max_len)
            self.positions = (k[None] - n_pad[:, None]).clamp_min(0)  # (B, max_len)
        return self.positions[:, self.pos : self.pos + 1], self.keep[..., : self.pos + 1]


def positions_and_mask(t0, T, n_pad, cached, device):
    """Positions (B|1, T) of queries t0..t0+T, and the (B|1, 1, T, t0+T) boolean keep-mask (None:
    plain causal, the flash kernel). A row's positions count from its first real token; pad keys
    are never seen, and a pad query sees itself only (no empty softmax row)."""
    q_pos = torch.arange(t0, t0 + T, device=device)
    pos = q_pos[None] if n_pad is None else (q_pos[None] - n_pad[:, None]).clamp_min(0)
    if n_pad is None and not cached:
        return pos, None
    k_pos = torch.arange(t0 + T, device=device)
    keep = (k_pos[None] <= q_pos[:, None])[None]  # causal (1, T, t0+T)
    if n_pad is not None:
        keep = keep & ((k_pos[None, None] >= n_pad[:, None, None]) | (k_pos[None] == q_pos[:, None])[None])
    return pos, keep.unsqueeze(1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, mask, cache, layer):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each, then (B, nh, T, hs):
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, pos+T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=False)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=False)
        self.mlp = MLP(config)

    def forward(self, x, mask, cache, layer):
        x = x + self.attn(self.ln_1(x), mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "wpe": nn.Embedding(config.block_size, config.n_embd),
                "h": nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                "ln_f": nn.LayerNorm(config.n_embd, bias=False),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied embeddings
        # the one init spot: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer) (GPT-2)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else 0.02
                torch.nn.init.normal_(p, mean=0.0, std=std)

    @classmethod
    def of_preset(cls, preset, vocab_size):
        """A fresh GPT of the size PRESETS[preset] with context length BLOCK_SIZE."""
        return cls(GPTConfig(vocab_size, BLOCK_SIZE, *PRESETS[preset]))

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, T):
        """Training FLOPs per token at sequence length T (PaLM appendix B, as nanoGPT's estimate_mfu)."""
        return 6 * self.num_params() + 12 * self.config.n_layer * self.config.n_embd * T

    def configure_optimizers(self, lr, weight_decay, fused):
        """AdamW, weight decay on matrices only (nanoGPT); betas (0.9, 0.95) as GPT-3; `fused`: one
        kernel for all parameters (CUDA, and CPU since torch 2.4)."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=fused)

    def forward(self, idx, n_pad=None, cache=None):
        """idx (B, T) -> logits (B, T, vocab) at every position. n_pad (B,): left-pad tokens per row.
        cache: a KVCache whose `pos` tokens precede idx; it is advanced by T."""
        B, T = idx.shape
        t0 = cache.pos if cache is not None else 0
        if t0 + T > self.config.block_size:
            raise ValueError(f"sequence of {t0 + T} tokens exceeds block_size {self.config.block_size}")
        if cache is not None and T == 1:  # a decode step: slices of what the cache built once
            pos, mask = cache.decode_view(n_pad, B, idx.device)
        else:
            pos, mask = positions_and_mask(t0, T, n_pad, cache is not None, idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, mask, cache, layer)
        if cache is not None:
            cache.pos += T
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)


def model_from(ck, path, vocab_size, preset=None):
    """GPT from a checkpoint's dict {"model", "model_args", ...} (runs.load_checkpoint reads it); exits
    naming the mismatch if the vocabulary (or, with `preset`, the shape) is not what this run expects."""
    args = ck["model_args"]
    if args["vocab_size"] != vocab_size:
        raise SystemExit(f"error: {path} has vocab_size {args['vocab_size']}; the tokenizer: {vocab_size}")
    shape = (args["n_layer"], args["n_head"], args["n_embd"])
    if preset is not None and shape != PRESETS[preset]:
        raise SystemExit(
            f"error: {path} is (n_layer, n_head, n_embd) {shape}; --preset {preset}: {PRESETS[preset]}"
        )
    model = GPT(GPTConfig(**args))
    model.load_state_dict(ck["model"])
    return model


# -----------------------------------------------------------------------------
# Sampling: a pure function of (model, prompts, generator)


@torch.no_grad()
def sample(
    model, prompt, max_new, n_pad=None, temperature=1.0, top_k=None, gen=None, stop_id=None, use_cache=True
):
    """Batched autoregressive sampling. prompt (B, L), left-padded by n_pad (B,) tokens per row.
    temperature 0 = greedy. Once a row emits stop_id it holds stop_id (log-prob 0) for the rest;
    sampling ends when every row has stopped. use_cache=False recomputes the whole prefix each
    step (the reference). Returns tokens (B, T<=max_new) and their log-probabilities under
    the distribution they were drawn from (= log π_θ when temperature = 1 and top_k is None)."""
    cache = KVCache(model.config.n_layer, prompt.shape[1] + max_new) if use_cache else None
    seq, done = prompt, torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    logits = model(prompt, n_pad, cache)[:, -1]
    tokens, logps = [], []
    for i in range(max_new):
        logits = logits.float()
        if temperature == 0:
            logp = F.log_softmax(logits, dim=-1)
            tok = logp.argmax(-1)
        else:
            logits = logits / temperature if temperature != 1 else logits
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, -math.inf)
            logp = F.log_softmax(logits, dim=-1)
            tok = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(1)
        lp = logp.gather(1, tok[:, None]).squeeze(1)
        if stop_id is not None:
            tok, lp = tok.masked_fill(done, stop_id), lp.masked_fill(done, 0.0)
            done = done | (tok == stop_id)
        tokens.append(tok)
        logps.append(lp)
        if i == max_new - 1 or (stop_id is not None and bool(done.all())):
            break
        if use_cache:
            logits = model(tok[:, None], n_pad, cache)[:, -1]
        else:
            seq = torch.cat([seq, tok[:, None]], dim=1)
            logits = model(seq, n_pad)[:, -1]
    return torch.stack(tokens, 1), torch.stack(logps, 1)


# -----------------------------------------------------------------------------
# Batches. Sampling left-pads the contexts (rows decode in lockstep, writing the same cache slot). Training
# forwards lay each row out as [context | response], right-padded: plain causal attention needs no mask (the
# fast kernel), padding is never attended, and response_logits() gathers each row's response positions, so
# student and teacher logits at [b, t] both predict resp[b, t] whatever the two contexts' lengths.


def right_pad(seqs, pad_id, device):
    """list of token lists -> tokens (B, T), mask (B, T) with 1 on real tokens."""
    T = max(len(s) for s in seqs)
    tok = torch.tensor([s + [pad_id] * (T - len(s)) for s in seqs], dtype=torch.long, device=device)
    mask = torch.arange(T, device=device)[None] < torch.tensor([len(s) for s in seqs], device=device)[:, None]
    return tok, mask


def response_logits(model, ctx_ids, resp, pad_id):
    """Logits predicting each response token: row b's state at t is (ctx_ids[b], resp[b, :t]).
    ctx_ids: list of B token lists; resp (B, T) -> (B, T, vocab)."""
    # the last response token predicts nothing we train on; pads follow and are never attended
    x, _ = right_pad([c + r for c, r in zip(ctx_ids, resp[:, :-1].tolist())], pad_id, resp.device)
    first = torch.tensor([len(c) - 1 for c in ctx_ids], device=resp.device)  # predicts resp[b, 0]
    at = (first[:, None] + torch.arange(resp.shape[1], device=resp.device)[None])[..., None]  # (B, T, 1)
    logits = model(x)  # (B, L, vocab)
    return logits.gather(1, at.expand(-1, -1, logits.shape[-1]))


def response_lengths(resp, stop_id):
    """Tokens up to and including the first stop_id (all T if the row never stopped)."""
    stop = resp == stop_id
    return torch.where(stop.any(1), stop.int().argmax(1) + 1, resp.shape[1])


def generate_responses(model, ctx_ids, max_new, stop_id, temperature=1.0, top_k=None, gen=None, chunk=512):
    """One response per context (a list of token lists), `chunk` rows per sampler call -> resp (B, T)
    (stop_id after the end), mask (B, T) (True up to and including the first stop_id)."""
    device, parts = gen.device if gen is not None else "cpu", []
    for i in range(0, len(ctx_ids), chunk):
        rows = ctx_ids[i : i + chunk]
        L = max(len(s) for s in rows)  # left-padded: each row right-aligned after its n_pad pads
        idx = torch.tensor([[stop_id] * (L - len(s)) + s for s in rows], dtype=torch.long, device=device)
        n_pad = torch.tensor([L - len(s) for s in rows], device=device)
        parts.append(sample(model, idx, max_new, n_pad, temperature, top_k, gen, stop_id)[0])
    T = max(p.shape[1] for p in parts)
    resp = torch.cat([F.pad(p, (0, T - p.shape[1]), value=stop_id) for p in parts])
    mask = torch.arange(T, device=resp.device)[None] < response_lengths(resp, stop_id)[:, None]
    return resp, mask

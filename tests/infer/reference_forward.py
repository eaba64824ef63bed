#!/usr/bin/env python3
"""A reference forward pass in PyTorch (Debian's python3-torch) for the engine's models.

Written from the Hugging Face modelling conventions (LlamaForCausalLM with llama3 RoPE scaling,
Qwen2 q/k/v bias, Qwen3 q/k norm; rotate_half RoPE; RMSNorm computed in float32), independently
of the C++ engine. It reads the same model folder (config.json, model.safetensors) and either
prints the logits of every position as raw float32 (`logits`) or greedy-decodes (`generate`).

    reference_forward.py logits MODEL_DIR 1,2,3 OUT_FILE
    reference_forward.py generate MODEL_DIR 1,2,3 MAX_NEW
"""
import json
import math
import os
import struct
import sys
import time

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]) if raw else torch.empty(0)
        tensors[name] = t.reshape(info["shape"]).to(torch.float32)
    return tensors


def inverse_frequencies(cfg, head_dim):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    scaling = cfg.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / high) & ~(wavelen > old / low)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Model:
    def __init__(self, folder):
        with open(f"{folder}/config.json") as f:
            self.cfg = cfg = json.load(f)
        self.w = load_safetensors(f"{folder}/model.safetensors")
        self.arch = cfg["architectures"][0]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads", self.heads)
        self.head_dim = cfg.get("head_dim", cfg["hidden_size"] // self.heads)
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.inv_freq = inverse_frequencies(cfg, self.head_dim)
        try:
            with open(f"{folder}/generation_config.json") as f:
                eos = json.load(f).get("eos_token_id", [])
        except FileNotFoundError:
            eos = cfg.get("eos_token_id", [])
        self.eos = set(eos if isinstance(eos, list) else [eos])

    def logits(self, ids):
        w, cfg = self.w, self.cfg
        n = len(ids)
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        pos = torch.arange(n, dtype=torch.float64)
        angles = torch.outer(pos, self.inv_freq)
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos().to(torch.float32), emb.sin().to(torch.float32)
        mask = torch.full((n, n), float("-inf")).triu(1)
        group = self.heads // self.kv_heads
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms_norm(x, w[p + "input_layernorm.weight"], self.eps)

            def proj(name):
                y = h @ w[p + f"self_attn.{name}_proj.weight"].T
                bias = w.get(p + f"self_attn.{name}_proj.bias")
                return y + bias if bias is not None else y

            q = proj("q").view(n, self.heads, self.head_dim).transpose(0, 1)
            k = proj("k").view(n, self.kv_heads, self.head_dim).transpose(0, 1)
            v = proj("v").view(n, self.kv_heads, self.head_dim).transpose(0, 1)
            if self.arch == "Qwen3ForCausalLM":
                q = rms_norm(q, w[p + "self_attn.q_norm.weight"], self.eps)
                k = rms_norm(k, w[p + "self_attn.k_norm.weight"], self.eps)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(group, dim=0)
            v = v.repeat_interleave(group, dim=0)
            scores = q @ k.transpose(1, 2) / math.sqrt(self.head_dim) + mask
            attn = torch.softmax(scores, dim=-1) @ v
            attn = attn.transpose(0, 1).reshape(n, self.heads * self.head_dim)
            x = x + attn @ w[p + "self_attn.o_proj.weight"].T
            h = rms_norm(x, w[p + "post_attention_layernorm.weight"], self.eps)
            gate = h @ w[p + "mlp.gate_proj.weight"].T
            up = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
        x = rms_norm(x, w["model.norm.weight"], self.eps)
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        return x @ head.T

    def generate(self, ids, max_new):
        ids = list(ids)
        out = []
        for _ in range(max_new):
            nxt = int(torch.argmax(self.logits(ids)[-1]))
            out.append(nxt)
            if nxt in self.eos:
                break
            ids.append(nxt)
        return out


def main():
    torch.set_grad_enabled(False)
    command, folder, ids_text = sys.argv[1:4]
    ids = [int(t) for t in ids_text.split(",")]
    model = Model(folder)
    if command == "logits":
        started = time.perf_counter()
        logits = model.logits(ids)
        if os.environ.get("REFERENCE_TIMING"):
            elapsed_us = int((time.perf_counter() - started) * 1e6)
            print(json.dumps({"forward_us": elapsed_us, "tokens": len(ids),
                              "torch_threads": torch.get_num_threads()}), file=sys.stderr)
        with open(sys.argv[4], "wb") as f:
            f.write(logits.contiguous().numpy().astype("<f4").tobytes())
    elif command == "generate":
        print(",".join(str(t) for t in model.generate(ids, int(sys.argv[4]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

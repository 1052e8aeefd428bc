"""A tiny random-weight llama GGUF, generated in milliseconds: the engine's start-up probe runs it
(`app.engines.probe`), and tests use it wherever they need a second model.

It has no chat template (so the engine must use its named fallback), an SPM tokenizer with
byte tokens (so any text tokenizes), and a 512-token context. Its words are noise: it is for
plumbing, never for meaning. With `quantized=True` its matrices are stored as Q4_0 and Q8_0, the
block formats whose kernels (AVX2, AVX-512, AMX…) a real quantized model runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_EMBD, N_LAYERS, N_HEADS, N_FF, N_CTX = 64, 2, 4, 128, 512


def _vocab() -> tuple[list[bytes], list[float], list[int]]:
    import gguf

    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>".encode())
        types.append(gguf.TokenType.BYTE)
    for text in ["\u2581"] + [chr(c) for c in range(33, 127)]:
        tokens.append(text.encode("utf-8"))
        types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * len(tokens)
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama(
    path: Path,
    *,
    architecture: str = "llama",
    seed: int = 0,
    chat_template: str | None = None,
    n_embd: int = N_EMBD,
    n_layers: int = N_LAYERS,
    n_heads: int = N_HEADS,
    n_kv_heads: int | None = None,
    n_ff: int = N_FF,
    n_ctx: int = N_CTX,
    dtype: type = np.float32,
    quantized: bool = False,
) -> Path:
    """Write the model; the size knobs let GPU checks build a model as big as a real small one."""
    import gguf
    from gguf import quants

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab, kv_heads = len(tokens), n_kv_heads or n_heads
    head_dim = n_embd // n_heads
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-test-llama")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def tensor(name: str, *shape: int, kind: str = "q4_0") -> None:
        values = rng.standard_normal(shape, dtype=np.float32) * 0.02
        if quantized and shape[-1] % 32 == 0:
            qtype = gguf.GGMLQuantizationType.Q8_0 if kind == "q8_0" else gguf.GGMLQuantizationType.Q4_0
            writer.add_tensor(name, quants.quantize(values, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, values.astype(dtype))

    def ones(name: str) -> None:
        writer.add_tensor(name, np.ones(n_embd, dtype=np.float32))

    tensor("token_embd.weight", n_vocab, n_embd)
    ones("output_norm.weight")
    tensor("output.weight", n_vocab, n_embd, kind="q8_0")
    for i in range(n_layers):
        ones(f"blk.{i}.attn_norm.weight")
        ones(f"blk.{i}.ffn_norm.weight")
        tensor(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        tensor(f"blk.{i}.attn_k.weight", kv_heads * head_dim, n_embd)
        tensor(f"blk.{i}.attn_v.weight", kv_heads * head_dim, n_embd)
        tensor(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        tensor(f"blk.{i}.ffn_gate.weight", n_ff, n_embd, kind="q8_0")
        tensor(f"blk.{i}.ffn_up.weight", n_ff, n_embd, kind="q8_0")
        tensor(f"blk.{i}.ffn_down.weight", n_embd, n_ff, kind="q8_0")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

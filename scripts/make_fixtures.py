#!/usr/bin/python3
"""Makes test/fixtures/tiny-janus/: a micro Janus checkpoint in every format the loader reads, expected forward
logits, a DeepSeek-format tokenizer with expected ids, and hostile files.

Requirements (Debian packages, no pip): apt-get install python3-torch python3-numpy python3-regex
Run from the repository root with the system Python (not a pyenv one):

    /usr/bin/python3 scripts/make_fixtures.py                  # (re)writes test/fixtures/tiny-janus/
    /usr/bin/python3 scripts/make_fixtures.py --verify F.safetensors [--dtype bf16]
        # reads a checkpoint that janus4o-tf saved with a safetensors-free reader (header JSON + numpy.frombuffer)
        # and compares every tensor with the fixture's weights (bit-exact, after bf16/f16 rounding if asked)

Outputs (all small; see the README.md written beside them):
  safetensors/   config.json, model.safetensors (F32, written here by hand: header JSON + raw bytes),
                 tokenizer.json, tokenizer_config.json, special_tokens_map.json
  bin/           config.json, pytorch_model.bin (F32, real torch.save zip format)
  bf16-sharded/  config.json, pytorch_model-0000{1,2}-of-00002.bin (BF16, torch.save), pytorch_model.bin.index.json
  native-f16/    config.json, model.safetensors in the transformers-native names (qkv split, pos_embed squeezed,
                 attn_pool / codebook_used / inv_freq dropped), F16
  expected.json  fixed input, gen_head logits at every position and lm_head logits at two, in float64 PyTorch
  misc.bin       torch.save of strided / offset / transposed views, F16, I64, nn.Parameter, empty and 0-d tensors
  tokenizer_cases.json  strings -> ids (reference encoder in fixture_tokenizer.py) and decodes
  hostile/       files the loader must refuse

The model is the Janus MultiModalityCausalLM module tree at micro sizes. config.json has the Janus layout; the
keys Janus itself does not have (Janus builds VQ-16 and SigLIP-L from fixed class names) are extensions that
src/io/hf_config.ts reads, all inside the `params` dicts:
  gen_vision_config.params: codebook_embed_dim, ch, ch_mult, num_res_blocks, z_channels, norm_groups,
                            num_attn_blocks (defaults: the VQ-16 values 8, 128, [1,1,2,2,4], 2, 256, 32, 2)
  vision_config.params:     width, layers, heads, patch_size, mlp_ratio, layer_norm_eps (required when model_name
                            is not a known SigLIP name such as siglip_large_patch16_384)
quantize.codebook_used has 64 entries here instead of LlamaGen's 65536 (it is skipped by the loader anyway).

Beside this file: fixture_model.py (module tree, config.json, reference forward), fixture_tokenizer.py (BPE
training, tokenizer.json, reference encoder/decoder), fixture_hostile.py (hostile files).

At its end it also runs the fixtures derived from these weights (each is a standalone script as well; a
rerun of this script writes the same tiny-janus bytes, so they stay consistent):
  fixture_janus_pro.py   test/fixtures/janus-pro-tiny/   official-format Janus-Pro folder of the same weights
  fixture_sharegpt4o.py  test/fixtures/sharegpt4o-tiny/  ShareGPT-4o-Image-layout dataset (24 records, PNGs)
  fixture_train_step.py  test/fixtures/reference-step/   one float64 PyTorch step of the Janus-4o reference trainer
"""
import argparse
import collections
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_tokenizer as ftok  # noqa: E402
from fixture_model import forward, janus_config, random_state_dict  # noqa: E402
from fixture_hostile import write_hostile  # noqa: E402
import fixture_janus_pro  # noqa: E402
import fixture_sharegpt4o  # noqa: E402
import fixture_train_step  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "test", "fixtures", "tiny-janus")


def write_json(path, obj, indent=1):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def write_safetensors(path, arrays, dtype):
    """arrays: name -> float32 numpy array; dtype 'F32' or 'F16'."""
    np_dtype = {"F32": "<f4", "F16": "<f2"}[dtype]
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in arrays.items():
        b = np.ascontiguousarray(a.astype(np_dtype)).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def read_safetensors(path):
    """The safetensors-free reader: header JSON + numpy.frombuffer."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        raw = data[8 + n + a:8 + n + b]
        if h["dtype"] == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, {"F32": "<f4", "F16": "<f2"}[h["dtype"]]).astype(np.float32)
        out[name] = arr.reshape(h["shape"])
    return out


def to_native(sd):
    """Original Janus names -> transformers-native names (janus-spec 5.3)."""
    out = collections.OrderedDict()
    vq_seg = {"res": "block"}
    for name, t in sd.items():
        if ".attn_pool." in name or name.endswith("codebook_used") or name.endswith("inv_freq"):
            continue
        p = name.split(".")
        if name.startswith("language_model.model."):
            new = "model.language_model." + ".".join(p[2:])
        elif name == "language_model.lm_head.weight":
            new = "lm_head.weight"
        elif name.startswith("vision_model.vision_tower."):
            rest = p[2:]
            if rest[0] == "blocks":
                tail = rest[2:]
                ren = {"norm1": "layer_norm1", "norm2": "layer_norm2"}
                if tail[0] == "attn":
                    tail = ["self_attn", "projection_layer" if tail[1] == "proj" else tail[1]] + tail[2:]
                else:
                    tail = [ren.get(tail[0], tail[0])] + tail[1:]
                new = "model.vision_model.encoder.layers." + rest[1] + "." + ".".join(tail)
                if tail[1] == "qkv":
                    for j, part in enumerate(torch.chunk(t, 3, 0)):
                        out[new.replace("qkv", "qkv"[j] + "_proj")] = part.clone()
                    continue
            elif rest[0] == "pos_embed":
                out["model.vision_model.embeddings.position_embedding.weight"] = t[0].clone()
                continue
            elif rest[0] == "patch_embed":
                new = "model.vision_model.embeddings.patch_embedding." + rest[-1]
            else:
                new = "model.vision_model.post_layernorm." + rest[-1]
        elif name.startswith("gen_vision_model."):
            segs = p[1:]
            if segs[0] in ("encoder", "decoder") and segs[1] == "conv_blocks":
                segs[1] = "down" if segs[0] == "encoder" else "up"
            if len(segs) > 2 and segs[1] == "mid":
                segs[2] = ["block_1", "attn_1", "block_2"][int(segs[2])]
            new = "model.vqmodel." + ".".join(vq_seg.get(s, s) for s in segs)
        elif name.startswith("aligner.") or name.startswith("gen_aligner."):
            mod = "model.aligner" if name.startswith("aligner.") else "model.generation_aligner"
            new = mod + (".fc1." if p[2] == "0" else ".hidden_layers.0.") + p[3]
        elif name.startswith("gen_head."):
            new = "model.generation_head." + ("proj_out" if p[1] == "output_mlp_projector" else p[1]) + "." + p[2]
        elif name == "gen_embed.weight":
            new = "model.generation_embeddings.weight"
        else:
            raise ValueError(name)
        out[new] = t
    return out


def verify(path, dtype):
    ref = read_safetensors(os.path.join(OUT, "safetensors", "model.safetensors"))
    got = read_safetensors(path)
    skipped = [n for n in ref if ".attn_pool." in n or n.endswith(("codebook_used", "inv_freq"))]
    problems = [f"missing {n}" for n in ref if n not in got and n not in skipped]
    problems += [f"unexpected {n}" for n in got if n not in ref]
    for n, a in got.items():
        if n not in ref:
            continue
        want = ref[n].astype(np.float32)
        if dtype == "bf16":
            want = torch.from_numpy(want.copy()).to(torch.bfloat16).to(torch.float32).numpy()
        elif dtype == "f16":
            want = want.astype(np.float16).astype(np.float32)
        if a.shape != want.shape or not np.array_equal(a.view(np.uint32), want.view(np.uint32)):
            problems.append(f"differs {n}")
    print(f"{path}: {len(got)} tensors, {len(problems)} problems")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    args = ap.parse_args()
    if args.verify:
        sys.exit(verify(args.verify, args.dtype))

    shutil.rmtree(OUT, ignore_errors=True)
    for sub in ("safetensors", "bin", "bf16-sharded", "native-f16"):
        os.makedirs(os.path.join(OUT, sub))
    sd = random_state_dict()
    tok, tok_cfg, stm = ftok.build_tokenizer()

    st_dir = os.path.join(OUT, "safetensors")
    write_json(os.path.join(st_dir, "config.json"), janus_config("float32"))
    write_safetensors(os.path.join(st_dir, "model.safetensors"), {k: v.numpy() for k, v in sd.items()}, "F32")
    write_json(os.path.join(st_dir, "tokenizer.json"), tok, indent=None)
    write_json(os.path.join(st_dir, "tokenizer_config.json"), tok_cfg)
    write_json(os.path.join(st_dir, "special_tokens_map.json"), stm)

    write_json(os.path.join(OUT, "bin", "config.json"), janus_config("float32"))
    torch.save(sd, os.path.join(OUT, "bin", "pytorch_model.bin"))

    bf = os.path.join(OUT, "bf16-sharded")
    write_json(os.path.join(bf, "config.json"), janus_config("bfloat16"))
    names = list(sd.keys())
    half = len(names) // 2
    weight_map, total = {}, 0
    for i, part in enumerate((names[:half], names[half:])):
        fname = f"pytorch_model-0000{i + 1}-of-00002.bin"
        shard = {n: sd[n].to(torch.bfloat16) for n in part}  # HF shards are plain dicts
        torch.save(shard, os.path.join(bf, fname))
        for n in part:
            weight_map[n] = fname
            total += shard[n].numel() * 2
    write_json(os.path.join(bf, "pytorch_model.bin.index.json"), {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=None)

    nat = os.path.join(OUT, "native-f16")
    write_json(os.path.join(nat, "config.json"), janus_config("float16"))
    write_safetensors(os.path.join(nat, "model.safetensors"), {k: v.numpy() for k, v in to_native(sd).items()}, "F16")

    # Fixed input: the T2I prompt of janus-spec 6.3 with BOS, then four image tokens (text id = PAD there).
    prompt = "a red square"
    text = ftok.encode(tok, f"{ftok.USER}: {prompt}\n\n{ftok.ASSISTANT}:{ftok.BOI}")
    pad = ftok.encode(tok, ftok.PAD, bos=False)[0]
    gen_ids = [3, 17, 42, 63]
    ids = text + [pad] * len(gen_ids)
    gen_pos = list(range(len(text), len(ids)))
    image, textl = forward(sd, ids, gen_pos, gen_ids)
    text_at = [0, len(text) - 1]
    write_json(os.path.join(OUT, "expected.json"), {
        "prompt": prompt,
        "textIds": [ids],
        "genTokens": {"positions": gen_pos, "ids": gen_ids},
        "imageLogitsAt": list(range(len(ids))),
        "imageLogits": [[round(float(v), 7) for v in row] for row in image],
        "textLogitsAt": text_at,
        "textLogits": [[round(float(v), 7) for v in textl[i]] for i in text_at],
    }, indent=None)

    cases = ["Hello, how are you?", "a red square on a blue background", "Draw 3 circles\nand 12 squares!",
             "na\u00efve caf\u00e9", "\u65e5\u672c\u8a9e", "  two  spaces  ", "smile \U0001F642",
             f"{ftok.USER}: a red square\n\n{ftok.ASSISTANT}:{ftok.BOI}",
             f"{ftok.BOS}x{ftok.EOS}{ftok.PAD}{ftok.PLACEHOLDER}{ftok.EOI}"]
    write_json(os.path.join(OUT, "tokenizer_cases.json"), [
        {"text": c, "ids": ftok.encode(tok, c, bos=False), "idsWithBos": ftok.encode(tok, c),
         "decoded": ftok.decode(tok, ftok.encode(tok, c)),
         "decodedSkipSpecial": ftok.decode(tok, ftok.encode(tok, c), skip_special=True)} for c in cases])

    # Storage cases real checkpoints can hold: strided and offset views sharing one storage, F16 / I64 storages,
    # an nn.Parameter saved as such, empty and 0-d tensors. Values are simple so the test can state them.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    misc = collections.OrderedDict(
        base=base, view=base[:, 1:5:2], transposed=base.t(), row=base[2], half=torch.arange(5).half() / 4,
        long=torch.arange(-2, 3), param=nn.Parameter(torch.tensor([1.5, -2.0])), empty=torch.zeros(0, 3),
        scalar=torch.tensor(7.0))
    torch.save(misc, os.path.join(OUT, "misc.bin"))

    write_hostile(os.path.join(OUT, "hostile"))
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("Made by `/usr/bin/python3 scripts/make_fixtures.py` (see its docstring); do not edit by hand.\n"
                "Micro Janus checkpoint (same weights in safetensors/, bin/, bf16-sharded/ (BF16-rounded) and\n"
                "native-f16/ (transformers-native names, F16-rounded)), expected.json (float64 PyTorch forward),\n"
                "tokenizer_cases.json, hostile/ (files the loader must refuse; never torch.load them).\n")
    # How far a float32 implementation of the same graph lands from the float64 reference (the TS test allows 1e-4).
    f32 = forward(sd, ids, gen_pos, gen_ids, torch.float32)[0].double()
    print(f"wrote {OUT}: {len(sd)} tensors, {sum(t.numel() for t in sd.values())} values, "
          f"sequence length {len(ids)}, logit range [{float(image.min()):.3f}, {float(image.max()):.3f}], "
          f"float32-vs-float64 max diff {float((f32 - image).abs().max()):.2e}")

    # Fixtures derived from the weights above (standalone scripts too; see their docstrings).
    fixture_janus_pro.main()
    fixture_sharegpt4o.main()
    fixture_train_step.main([])


if __name__ == "__main__":
    main()

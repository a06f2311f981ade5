#!/usr/bin/python3
"""Makes test/fixtures/janus-pro-tiny/: the micro Janus model as an official-format Janus-Pro model folder (the file
set of deepseek-ai/Janus-Pro-1B, janus-spec 5.1 / 6.1), for loading tests and the reference training step.

    /usr/bin/python3 scripts/fixture_janus_pro.py         # (re)writes test/fixtures/janus-pro-tiny/

Standalone and deterministic: the weights are test/fixtures/tiny-janus/bin/pytorch_model.bin (written by
make_fixtures.py), copied byte for byte, so this script never draws new random weights and the tiny-janus files
stay as they are. make_fixtures.py runs this script at its end, after it has rewritten tiny-janus/.

Files:
  config.json               the Janus-Pro layout of tiny-janus/bin/config.json (fixture_model.janus_config), with
                            language_config.max_position_embeddings 128 instead of 64: an edit row of this
                            model (BOS, role, E and X blocks of 16, instruction, BOI, 16 target slots) is ~70
                            positions long. RoPE has no weights, so the checkpoint is unchanged.
  pytorch_model.bin         F32 state dict, original Janus key names (inv_freq, attn_pool, codebook_used
                            included), real torch.save zip format
  tokenizer.json, tokenizer_config.json, special_tokens_map.json
                            the DeepSeek byte-level BPE of fixture_tokenizer.py (same bytes as
                            tiny-janus/safetensors/): 296 BPE tokens + 14 added tokens = 310 ids <= vocab 320
  processor_config.json     VLChatProcessor keys of the Janus-Pro file, num_image_tokens 16 (8 px / 2 = 4x4 grid)
  preprocessor_config.json  VLMImageProcessor keys of the Janus-Pro file, image_size 8 and min_size 2 (Janus-Pro:
                            384 and 14; a 14 px minimum would not fit an 8 px model)
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_tokenizer as ftok  # noqa: E402
from fixture_model import IMAGE_SIZE, LLM, SIG, VQ, janus_config  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "test", "fixtures", "tiny-janus", "bin", "pytorch_model.bin")
OUT = os.path.join(ROOT, "test", "fixtures", "janus-pro-tiny")
MAX_POSITIONS = 128
MIN_SIZE = 2


def num_image_tokens():
    """VQ grid side = image size / 2^(levels - 1); SigLIP gives the same count (image size / patch)^2."""
    side = IMAGE_SIZE // 2 ** (len(VQ["ch_mult"]) - 1)
    assert (IMAGE_SIZE // SIG["patch_size"]) ** 2 == side * side
    return side * side


def config():
    cfg = janus_config("float32")
    cfg["language_config"]["max_position_embeddings"] = MAX_POSITIONS
    return cfg


def processor_config():
    # Keys and order of Janus-Pro's processor_config.json (janus-spec 6.1); num_image_tokens scaled to the model.
    return {"add_special_token": False, "ignore_id": -100, "image_tag": ftok.PLACEHOLDER, "mask_prompt": True,
            "num_image_tokens": num_image_tokens(), "processor_class": "VLChatProcessor", "sft_format": "deepseek",
            "system_prompt": ""}


def preprocessor_config():
    # Keys of Janus-Pro's preprocessor_config.json (janus-spec 3.3). In the released file processor_class names
    # the enclosing VLChatProcessor and image_processor_type the image processor class.
    return {"background_color": [127, 127, 127], "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "VLMImageProcessor", "image_size": IMAGE_SIZE, "image_std": [0.5, 0.5, 0.5],
            "min_size": MIN_SIZE, "processor_class": "VLChatProcessor", "rescale_factor": 1 / 255}


def write_json(path, obj, indent=1):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


README = """Made by `/usr/bin/python3 scripts/fixture_janus_pro.py` (see its docstring); do not edit by hand.

The micro Janus model of test/fixtures/tiny-janus as an official-format Janus-Pro folder: config.json (Janus-Pro
layout plus the micro-size extension keys of src/io/hf_config.ts; max_position_embeddings 128),
pytorch_model.bin (a byte copy of tiny-janus/bin/pytorch_model.bin: F32, original key names, torch.save zip),
tokenizer.json / tokenizer_config.json / special_tokens_map.json (DeepSeek byte-level BPE with the real special
tokens, 310 ids <= text vocab 320), processor_config.json and preprocessor_config.json (the Janus-Pro keys, scaled:
num_image_tokens 16, image_size 8, min_size 2). preprocessor_config.json names the image processor in
image_processor_type ("VLMImageProcessor") and the enclosing processor in processor_class ("VLChatProcessor"),
as the released Janus-Pro files do as far as known (written from memory of those files, not from a stored copy).

test/fixtures/reference-step/ (scripts/fixture_train_step.py) holds one PyTorch training step of this model.
"""


def main():
    if not os.path.exists(SRC):
        sys.exit(f"{SRC} is missing: run scripts/make_fixtures.py first")
    tok, tok_cfg, stm = ftok.build_tokenizer()
    n_ids = len(tok["model"]["vocab"]) + len(tok["added_tokens"])
    if n_ids > LLM["vocab_size"] or max(a["id"] for a in tok["added_tokens"]) >= LLM["vocab_size"]:
        sys.exit(f"tokenizer has {n_ids} ids, more than the model's text vocabulary {LLM['vocab_size']}")
    os.makedirs(OUT, exist_ok=True)
    shutil.copyfile(SRC, os.path.join(OUT, "pytorch_model.bin"))
    write_json(os.path.join(OUT, "config.json"), config())
    write_json(os.path.join(OUT, "tokenizer.json"), tok, indent=None)
    write_json(os.path.join(OUT, "tokenizer_config.json"), tok_cfg)
    write_json(os.path.join(OUT, "special_tokens_map.json"), stm)
    write_json(os.path.join(OUT, "processor_config.json"), processor_config())
    write_json(os.path.join(OUT, "preprocessor_config.json"), preprocessor_config())
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(README)
    print(f"wrote {OUT}: tokenizer {n_ids} ids (text vocab {LLM['vocab_size']}), {num_image_tokens()} image tokens")


if __name__ == "__main__":
    main()

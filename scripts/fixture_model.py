"""The micro Janus model of the fixtures: the MultiModalityCausalLM module tree at tiny sizes (state-dict names and
shapes exactly as Janus / LlamaGen / timm build them), its config.json, and a float64 PyTorch reference forward of
the generation path (LLaMA with fp32-style RMSNorm, rotate-half RoPE, causal MHA, SwiGLU; gen_aligner(gen_embed)
inputs for image tokens; gen_head and lm_head logits). Used by make_fixtures.py.
"""
import numpy as np
import torch
from torch import nn

IMAGE_SIZE = 8
VQ = dict(codebook_embed_dim=4, ch=2, ch_mult=[1, 2], num_res_blocks=1, z_channels=2, norm_groups=2,
          num_attn_blocks=1)
IMAGE_VOCAB = 64
GEN_EMBED = 8
SIG = dict(width=8, layers=1, heads=2, patch_size=2, mlp_ratio=2.0, layer_norm_eps=1e-6)
LLM = dict(vocab_size=320, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
           intermediate_size=32, rope_theta=1000.0, rms_norm_eps=1e-5, max_position_embeddings=64)


# ---- module tree (names and shapes exactly as Janus / LlamaGen / timm build them) -------------------------------
def conv(i, o, k):
    return nn.Conv2d(i, o, k)


class GN(nn.GroupNorm):
    def __init__(self, c):
        super().__init__(VQ["norm_groups"], c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.norm1, self.conv1, self.norm2, self.conv2 = GN(i), conv(i, o, 3), GN(o), conv(o, o, 3)
        if i != o:
            self.nin_shortcut = conv(i, o, 1)


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm, self.q, self.k, self.v, self.proj_out = GN(c), conv(c, c, 1), conv(c, c, 1), conv(c, c, 1), conv(c, c, 1)


class Resample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = conv(c, c, 3)


class Encoder(nn.Module):
    def __init__(self, ch, mult, nres, z):
        super().__init__()
        self.conv_in = conv(3, ch, 3)
        self.conv_blocks = nn.ModuleList()
        block_in = ch
        for lvl, m in enumerate(mult):
            blk = nn.Module()
            blk.res, blk.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(nres):
                blk.res.append(ResnetBlock(block_in, ch * m))
                block_in = ch * m
                if lvl == len(mult) - 1:
                    blk.attn.append(AttnBlock(block_in))
            if lvl != len(mult) - 1:
                blk.downsample = Resample(block_in)
            self.conv_blocks.append(blk)
        self.mid = nn.ModuleList([ResnetBlock(block_in, block_in), AttnBlock(block_in), ResnetBlock(block_in, block_in)])
        self.norm_out, self.conv_out = GN(block_in), conv(block_in, z, 3)


class Decoder(nn.Module):
    def __init__(self, ch, mult, nres, z):
        super().__init__()
        block_in = ch * mult[-1]
        self.conv_in = conv(z, block_in, 3)
        self.mid = nn.ModuleList([ResnetBlock(block_in, block_in), AttnBlock(block_in), ResnetBlock(block_in, block_in)])
        self.conv_blocks = nn.ModuleList()
        for lvl in reversed(range(len(mult))):
            blk = nn.Module()
            blk.res, blk.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(nres + 1):
                blk.res.append(ResnetBlock(block_in, ch * mult[lvl]))
                block_in = ch * mult[lvl]
                if lvl == len(mult) - 1:
                    blk.attn.append(AttnBlock(block_in))
            if lvl != 0:
                blk.upsample = Resample(block_in)
            self.conv_blocks.append(blk)
        self.norm_out, self.conv_out = GN(block_in), conv(block_in, 3, 3)


class VectorQuantizer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(IMAGE_VOCAB, VQ["codebook_embed_dim"])
        self.register_buffer("codebook_used", torch.zeros(64))


class VQModel(nn.Module):
    def __init__(self):
        super().__init__()
        a = (VQ["ch"], VQ["ch_mult"], VQ["num_res_blocks"], VQ["z_channels"])
        self.encoder, self.decoder, self.quantize = Encoder(*a), Decoder(*a), VectorQuantizer()
        self.quant_conv = conv(VQ["z_channels"], VQ["codebook_embed_dim"], 1)
        self.post_quant_conv = conv(VQ["codebook_embed_dim"], VQ["z_channels"], 1)


class Mlp(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, d)


class SigBlock(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.qkv, self.attn.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = Mlp(d, h)


class AttentionPoolLatent(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.latent = nn.Parameter(torch.zeros(1, 1, d))
        self.q, self.kv, self.proj, self.norm, self.mlp = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d), nn.LayerNorm(d), Mlp(d, h)


class VisionTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        d, p, h = SIG["width"], SIG["patch_size"], int(SIG["width"] * SIG["mlp_ratio"])
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, p, stride=p)
        self.pos_embed = nn.Parameter(torch.zeros(1, (IMAGE_SIZE // p) ** 2, d))
        self.blocks = nn.ModuleList([SigBlock(d, h) for _ in range(SIG["layers"])])
        self.norm = nn.LayerNorm(d)
        self.attn_pool = AttentionPoolLatent(d, h)


class MlpProjector(nn.Module):
    def __init__(self, i, n):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(i, n), nn.GELU(), nn.Linear(n, n))


class VisionHead(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.output_mlp_projector, self.vision_activation, self.vision_head = nn.Linear(n, n), nn.GELU(), nn.Linear(n, IMAGE_VOCAB)


class Rotary(nn.Module):
    def __init__(self, hd):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (LLM["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd)))


class LlamaLayer(nn.Module):
    def __init__(self, d, f, hd):
        super().__init__()
        self.self_attn = nn.Module()
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self.self_attn, n, nn.Linear(d, d, bias=False))
        self.self_attn.rotary_emb = Rotary(hd)
        self.mlp = nn.Module()
        self.mlp.gate_proj, self.mlp.up_proj, self.mlp.down_proj = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False), nn.Linear(f, d, bias=False)
        self.input_layernorm, self.post_attention_layernorm = nn.Module(), nn.Module()
        self.input_layernorm.weight = nn.Parameter(torch.ones(d))
        self.post_attention_layernorm.weight = nn.Parameter(torch.ones(d))


class MultiModalityCausalLM(nn.Module):
    """Submodule order as in Janus (state_dict order follows it)."""

    def __init__(self):
        super().__init__()
        d = LLM["hidden_size"]
        self.vision_model = nn.Module()
        self.vision_model.vision_tower = VisionTransformer()
        self.aligner = MlpProjector(SIG["width"], d)
        self.gen_vision_model = VQModel()
        self.gen_aligner = MlpProjector(GEN_EMBED, d)
        self.gen_head = VisionHead(d)
        self.gen_embed = nn.Embedding(IMAGE_VOCAB, GEN_EMBED)
        lm = self.language_model = nn.Module()
        lm.model = nn.Module()
        lm.model.embed_tokens = nn.Embedding(LLM["vocab_size"], d)
        hd = d // LLM["num_attention_heads"]
        lm.model.layers = nn.ModuleList([LlamaLayer(d, LLM["intermediate_size"], hd) for _ in range(LLM["num_hidden_layers"])])
        lm.model.norm = nn.Module()
        lm.model.norm.weight = nn.Parameter(torch.ones(d))
        lm.lm_head = nn.Linear(d, LLM["vocab_size"], bias=False)


def random_state_dict():
    """Values of order 1 everywhere, so the logits are O(1) and a wrong layout or op shows up far above 1e-4."""
    g = torch.Generator().manual_seed(1234)
    sd = MultiModalityCausalLM().state_dict()
    for name, t in sd.items():
        if name.endswith("inv_freq"):
            continue
        r = torch.randn(t.shape, generator=g)
        if name.endswith("codebook_used"):
            v = torch.arange(t.numel(), dtype=torch.float32)
        elif t.dim() == 1 and name.endswith(".weight"):
            v = 1.0 + 0.1 * r  # norm scales
        elif name.endswith(".bias"):
            v = 0.1 * r
        elif "embed_tokens" in name or name in ("gen_embed.weight", "gen_vision_model.quantize.embedding.weight"):
            v = r
        else:
            v = r / max(1.0, float(np.sqrt(np.prod(t.shape[1:]))))
        t.copy_(v)
    return sd


# ---- reference forward (float64) -------------------------------------------------------------------------------
def forward(sd, text_ids, gen_pos, gen_ids, dtype=torch.float64):
    W = {k: v.to(dtype) for k, v in sd.items()}
    lin = lambda x, p, bias=True: x @ W[p + ".weight"].T + (W[p + ".bias"] if bias else 0)  # noqa: E731
    gelu = torch.nn.functional.gelu  # exact (erf) GELU, as torch.nn.GELU()
    eps, d, nh = LLM["rms_norm_eps"], LLM["hidden_size"], LLM["num_attention_heads"]
    hd = d // nh

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * W[w]

    x = W["language_model.model.embed_tokens.weight"][torch.tensor(text_ids)].clone()
    gen = W["gen_embed.weight"][torch.tensor(gen_ids)]
    x[torch.tensor(gen_pos)] = lin(gelu(lin(gen, "gen_aligner.layers.0")), "gen_aligner.layers.2")
    n = x.shape[0]
    inv = 1.0 / (LLM["rope_theta"] ** (torch.arange(0, hd, 2, dtype=dtype) / hd))
    ang = torch.outer(torch.arange(n, dtype=dtype), inv)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rot = lambda t: torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1)  # noqa: E731
    mask = torch.full((n, n), float("-inf"), dtype=dtype).triu(1)
    for i in range(LLM["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        h = rms(x, p + "input_layernorm.weight")
        q, k, v = (lin(h, p + f"self_attn.{m}_proj", False).view(n, nh, hd).transpose(0, 1) for m in "qkv")
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        a = torch.softmax(q @ k.transpose(1, 2) / np.sqrt(hd) + mask, -1) @ v
        x = x + lin(a.transpose(0, 1).reshape(n, d), p + "self_attn.o_proj", False)
        h = rms(x, p + "post_attention_layernorm.weight")
        x = x + lin(torch.nn.functional.silu(lin(h, p + "mlp.gate_proj", False)) * lin(h, p + "mlp.up_proj", False), p + "mlp.down_proj", False)
    hn = rms(x, "language_model.model.norm.weight")
    image = lin(gelu(lin(hn, "gen_head.output_mlp_projector")), "gen_head.vision_head")
    text = lin(hn, "language_model.lm_head", False)
    return image, text


# ---- files -----------------------------------------------------------------------------------------------------
def janus_config(dtype):
    d = LLM["hidden_size"]
    return {
        "aligner_config": {"cls": "MlpProjector", "model_type": "aligner",
                           "params": {"depth": 2, "input_dim": SIG["width"], "n_embed": d, "projector_type": "mlp_gelu"}},
        "architectures": ["MultiModalityCausalLM"],
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner",
                               "params": {"depth": 2, "input_dim": GEN_EMBED, "n_embed": d, "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
                            "params": {"image_token_embed": d, "image_token_size": IMAGE_VOCAB, "n_embed": d}},
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision",
                              "params": {"image_token_size": IMAGE_VOCAB, "n_embed": GEN_EMBED, **VQ}},
        "language_config": {"model_type": "llama", "torch_dtype": dtype, **LLM},
        "model_type": "multi_modality",
        "torch_dtype": dtype,
        "transformers_version": "4.33.1",
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision",
                          "params": {"image_size": IMAGE_SIZE, "model_name": "siglip_micro_patch2_8", "select_feature": "same",
                                     "select_layer": -1, **SIG}},
    }

#!/usr/bin/python3
"""Makes test/fixtures/sharegpt4o-tiny/: a dataset in the ShareGPT-4o-Image layout (janus-spec 9), small enough to
commit, for the reader (src/data/sharegpt4o.ts), the VQ-code shards (src/data/shards.ts) and the reference
training step (fixture_train_step.py takes its edit input images from here).

    /usr/bin/python3 scripts/fixture_sharegpt4o.py        # (re)writes test/fixtures/sharegpt4o-tiny/

Standalone and deterministic (numpy only, no PIL, no random state): every image is drawn from its prompt, and the
PNG files are written here byte by byte (zlib + struct), so the same bytes come out on every machine with the
same zlib. Layout:

  text_to_image.json            [{input_prompt, output_image}] x 12
  text_and_image_to_image.json  [{input_prompt, input_image: [path], output_image}] x 12
  images/t2i_NN.png, images/edit_NN_in.png, images/edit_NN_out.png   (paths relative to the root)

Images come in mixed sizes and aspect ratios (8x8, 12x7, 5x9, 16x16, 9x5, 7x12, ...), and in the PNG colour
types RGB (2), RGBA (6), grayscale (0) and grayscale+alpha (4), all 8 bits per sample; some rows use the PNG Sub
and Up filters. The edit input images of records 0 and 1 are 8x8 RGB, exactly the micro model's input size, so
their model input is the plain byte -> [-1, 1] map with no resampling (the reference step uses them). Prompts use
the words of the fixture tokenizer's BPE corpus (fixture_tokenizer.CORPUS), so they tokenise into merged pieces.
"""
import json
import os
import shutil
import struct
import zlib

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "test", "fixtures", "sharegpt4o-tiny")

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 210), "yellow": (235, 210, 40),
           "white": (250, 250, 250), "black": (10, 10, 10), "gray": (127, 127, 127)}
SHAPES = ("square", "circle", "triangle", "star")

# (prompt, size (w, h), PNG colour type)
T2I = [
    ("a red square on a blue background", (8, 8), 2),
    ("a green circle next to a red triangle", (12, 7), 6),
    ("draw a small blue square", (5, 9), 0),
    ("a yellow star on a green background", (16, 16), 4),
    ("the square is red and the circle is green", (9, 5), 2),
    ("an image of a cat on a mat", (7, 12), 2),
    ("a blue circle on a red background", (8, 8), 6),
    ("12 squares and 3 circles", (16, 9), 0),
    ("a small green triangle", (6, 6), 2),
    ("a red circle next to a blue square", (10, 10), 6),
    ("a yellow square on a blue background", (11, 8), 4),
    ("draw a green star", (8, 13), 2),
]
# (instruction, input size, input colour type, output size, output colour type)
EDITS = [
    ("make the circle red", (8, 8), 2, (8, 8), 2),
    ("move the square to the left", (8, 8), 2, (12, 7), 6),
    ("Replace the red square with a yellow star.", (12, 7), 6, (12, 7), 2),
    ("make the square larger", (5, 9), 0, (5, 9), 0),
    ("make the circle green", (16, 16), 2, (16, 16), 4),
    ("move the circle to the left", (9, 5), 4, (9, 5), 2),
    ("make the triangle blue", (7, 12), 2, (8, 8), 2),
    ("replace the circle with a red square", (8, 8), 6, (8, 8), 6),
    ("make the star larger and move it to the left", (10, 6), 2, (10, 6), 0),
    ("make the background green", (6, 10), 0, (6, 10), 2),
    ("move the triangle to the left", (13, 8), 2, (13, 8), 4),
    ("make the square yellow", (8, 8), 2, (16, 16), 2),
]


# ---- drawing ----------------------------------------------------------------------------------------------------
def scene(prompt):
    """(background rgb, [(shape, rgb)]) read off the prompt's words; defaults keep every image non-trivial."""
    w = prompt.lower().replace(".", "").split()
    bg = COLOURS["white"]
    for i, t in enumerate(w):
        if t == "background" and i > 0 and w[i - 1] in COLOURS:
            bg = COLOURS[w[i - 1]]
    shapes = []
    for i, t in enumerate(w):
        base = t[:-1] if t.endswith("s") else t
        if base in SHAPES:
            colour = w[i - 1] if i > 0 and w[i - 1] in COLOURS else None
            shapes.append((base, COLOURS[colour] if colour else COLOURS["black"]))
    if not shapes:
        shapes = [("square", COLOURS["gray"])]
    return bg, shapes


def draw(prompt, size, variant=0):
    """An RGBA uint8 image [h, w, 4]: the prompt's shapes side by side on its background."""
    w, h = size
    img = np.zeros((h, w, 4), np.uint8)
    bg, shapes = scene(prompt)
    img[..., :3] = bg
    img[..., 3] = 255
    yy, xx = np.mgrid[0:h, 0:w]
    k = len(shapes)
    for j, (shape, rgb) in enumerate(shapes):
        # slot j of k along x; shifted left by `variant` pixels (the "move ... left" edits)
        cx = (j + 0.5) * w / k - variant
        cy = h / 2 - 0.5
        r = max(1.0, min(w / k, h) * 0.35)
        dx, dy = xx - cx, yy - cy
        if shape == "square":
            m = (abs(dx) <= r) & (abs(dy) <= r)
        elif shape == "circle":
            m = dx * dx + dy * dy <= r * r
        elif shape == "triangle":
            m = (dy >= -r) & (dy <= r) & (abs(dx) <= (dy + r) / 2 + 0.5)
        else:  # star: a plus sign
            m = ((abs(dx) <= r) & (abs(dy) <= r / 3 + 0.5)) | ((abs(dy) <= r) & (abs(dx) <= r / 3 + 0.5))
        img[m, :3] = rgb
    # a little deterministic texture so no two images are alike and the alpha channel is not constant
    img[..., :3] = np.clip(img[..., :3].astype(np.int32) + ((xx * 7 + yy * 13) % 5)[..., None] - 2, 0, 255).astype(np.uint8)
    img[..., 3] = (255 - ((xx * 3 + yy * 5) % 4) * 40).astype(np.uint8)
    return img


def as_colour_type(rgba, colour_type):
    """RGBA uint8 -> the pixel array of a PNG colour type (0 gray, 2 RGB, 4 gray+alpha, 6 RGBA)."""
    gray = np.round(rgba[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    if colour_type == 0:
        return gray[..., None]
    if colour_type == 2:
        return rgba[..., :3]
    if colour_type == 4:
        return np.stack([gray, rgba[..., 3]], -1)
    if colour_type == 6:
        return rgba
    raise ValueError(colour_type)


# ---- PNG by hand ------------------------------------------------------------------------------------------------
def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(pixels, colour_type):
    """pixels [h, w, channels] uint8 -> PNG bytes (8-bit, no interlace). Row r uses filter r % 3 (None, Sub, Up)."""
    h, w, c = pixels.shape
    bpp = c
    raw = bytearray()
    prev = np.zeros(w * c, np.uint8)
    for r in range(h):
        row = pixels[r].reshape(-1)
        f = r % 3
        if f == 0:
            out = row
        elif f == 1:  # Sub: x - left (bpp bytes back)
            left = np.concatenate([np.zeros(bpp, np.uint8), row[:-bpp]])
            out = (row.astype(np.int32) - left) % 256
        else:  # Up: x - above
            out = (row.astype(np.int32) - prev) % 256
        raw.append(f)
        raw += np.asarray(out, np.uint8).tobytes()
        prev = row
    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + _chunk(b"IEND", b"")


def edit_input_prompt(k):
    return T2I[k % len(T2I)][0]


# ---- the dataset ------------------------------------------------------------------------------------------------
def records():
    """(t2i records, edit records, {relative path: (pixels, colour type)}) -- everything the files hold."""
    files = {}
    t2i = []
    for k, (prompt, size, ct) in enumerate(T2I):
        path = f"images/t2i_{k:02d}.png"
        files[path] = (as_colour_type(draw(prompt, size), ct), ct)
        t2i.append({"input_prompt": prompt, "output_image": path})
    edits = []
    for k, (instr, isize, ict, osize, oct_) in enumerate(EDITS):
        src_prompt = edit_input_prompt(k)
        pin, pout = f"images/edit_{k:02d}_in.png", f"images/edit_{k:02d}_out.png"
        files[pin] = (as_colour_type(draw(src_prompt, isize), ict), ict)
        shift = 1 if "left" in instr else 0
        files[pout] = (as_colour_type(draw(src_prompt + " " + instr, osize, shift), oct_), oct_)
        edits.append({"input_prompt": instr, "input_image": [pin], "output_image": pout})
    return t2i, edits, files


def rgb_of(path):
    """The RGB uint8 pixels [h, w, 3] a decoder gets from one of the fixture's RGB (colour type 2) images."""
    _, _, files = records()
    pixels, ct = files[path]
    if ct != 2:
        raise ValueError(f"{path} is colour type {ct}, not RGB")
    return pixels


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


README = """Made by `/usr/bin/python3 scripts/fixture_sharegpt4o.py` (see its docstring); do not edit by hand.

A 24-record dataset in the ShareGPT-4o-Image layout (janus-spec 9): text_to_image.json (12 records
{input_prompt, output_image}) and text_and_image_to_image.json (12 records {input_prompt, input_image: [path],
output_image}), image paths relative to this folder. The PNGs (written byte by byte, no PIL) have mixed sizes and
aspect ratios (5x9 ... 16x16, none larger than 16 px) and the colour types RGB, RGBA, grayscale and
grayscale+alpha, rows filtered with None/Sub/Up. The edit inputs of records 0 and 1 are 8x8 RGB: the micro model's
input size, so their [-1, 1] pixels need no resampling; scripts/fixture_train_step.py takes the pixels of its edit
rows from them (test/fixtures/reference-step/).

Used by test/reference_step.test.ts: readShareGPT4o accepts every record, prepareShards VQ-encodes all 36 images
with the janus-pro-tiny model (image_size 8, 16 tokens; the loader gets preprocessor_config.json's min_size, 2,
as Janus' VLMImageProcessor reads it).
"""


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "images"))
    t2i, edits, files = records()
    for rel, (pixels, ct) in sorted(files.items()):
        with open(os.path.join(OUT, rel), "wb") as f:
            f.write(png_bytes(pixels, ct))
    write_json(os.path.join(OUT, "text_to_image.json"), t2i)
    write_json(os.path.join(OUT, "text_and_image_to_image.json"), edits)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(README)
    total = sum(os.path.getsize(os.path.join(OUT, r)) for r in files)
    print(f"wrote {OUT}: {len(t2i)} T2I + {len(edits)} edit records, {len(files)} PNGs ({total} bytes)")


if __name__ == "__main__":
    main()

"""Hostile checkpoint files for the loader's refusal tests (used by make_fixtures.py).

Each file is small and would do harm (or allocate huge buffers) only in a reader that trusts it. The pickles are
made by Python's own pickle module from objects whose __reduce__ names a dangerous callable, which is exactly what
an attacker would ship; the marker path lets the tests check that nothing ran.
"""
import collections
import json
import os
import pickle
import struct
import zipfile

import torch

MARKER = "/tmp/janus4o-hostile-marker"


class _System:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


class _Eval:
    def __reduce__(self):
        return (eval, (f"__import__('os').system('touch {MARKER}')",))


def _safetensors(path, header, data):
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)


def _info(name):
    """A fixed timestamp, so regenerating the fixtures gives the same bytes."""
    return zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))


def _torch_zip(path, pkl):
    """The torch.save zip layout (archive/data.pkl, archive/version), stored, no compression."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(_info("archive/data.pkl"), pkl)
        z.writestr(_info("archive/version"), "3\n")


def write_hostile(out):
    os.makedirs(out, exist_ok=True)
    # Header length field claims 10^15 bytes.
    with open(os.path.join(out, "huge_header.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", 10 ** 15) + b"{}" + b"\0" * 30)
    # A tensor whose byte range claims 10^15 bytes (shape consistent with it), far past the end of the file.
    _safetensors(os.path.join(out, "huge_tensor.safetensors"),
                 {"w": {"dtype": "F32", "shape": [250000000000000], "data_offsets": [0, 10 ** 15]}}, b"\0" * 16)
    # Offsets consistent with the shape but past EOF.
    _safetensors(os.path.join(out, "offset_past_eof.safetensors"),
                 {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                  "b": {"dtype": "F32", "shape": [4], "data_offsets": [4096, 4112]}}, b"\0" * 16)
    # Two tensors sharing bytes.
    _safetensors(os.path.join(out, "overlap.safetensors"),
                 {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                  "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, b"\0" * 24)
    # Shape x dtype size disagrees with the byte range.
    _safetensors(os.path.join(out, "size_mismatch.safetensors"),
                 {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, b"\0" * 16)
    # Header bytes that are not JSON.
    raw = b"this is {not json"
    with open(os.path.join(out, "not_json.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)

    # A real torch.save'd state dict with a tensor next to an object whose unpickling calls os.system (pickled
    # as posix.system): the attack as it would arrive.
    torch.save(collections.OrderedDict(weight=torch.zeros(2), evil=_System()), os.path.join(out, "os_system.bin"))
    _torch_zip(os.path.join(out, "eval.bin"), pickle.dumps({"evil": _Eval()}, protocol=2))
    # A harmless but non-allow-listed global (protocol 4: STACK_GLOBAL rather than GLOBAL).
    _torch_zip(os.path.join(out, "counter.bin"), pickle.dumps({"c": collections.Counter("ab")}, protocol=4))
    # Zip entries that escape the archive folder.
    for fname, bad in (("traversal.bin", "archive/../../evil.txt"), ("absolute.bin", "/etc/evil.txt")):
        with zipfile.ZipFile(os.path.join(out, fname), "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr(_info("archive/data.pkl"), pickle.dumps({}, protocol=2))
            z.writestr(_info(bad), b"x")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("Hostile inputs for the loader tests, made by scripts/make_fixtures.py (fixture_hostile.py).\n"
                "Do not load these with torch.load or any trusting reader: the .bin pickles run "
                f"`touch {MARKER}` when unpickled by Python.\n")

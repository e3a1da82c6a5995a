#!/usr/bin/env python3
"""Corpus v2: openly licensed photographs from Debian's gcompris-qt-data, per-file licensed.

GCompris ships its activities' images inside Qt resource bundles
(/usr/share/gcompris-qt/rcc/*.rcc, read with tools/rcc.py). Several bundles carry the upstream
`resource/README`, DEP-5-like stanzas (Copyright / License / Source / Files) with one license
per file. A file enters only when

  - it is a raster image (.webp, .jpg, .png) of a bundle in BUNDLES (photographic activities:
    monuments, animals, wildlife, music being played; `details` holds paintings, `lang` has no
    README, `categorization` is mostly smaller than 256 px, so they are left out), and
  - its README stanza names a license and a Wikimedia Commons `Source:` (the upstream
    photograph; the drawings in these bundles are SVGs credited to the GCompris artists with
    no Source), and
  - its short side is at least 256 pixels.

Each photograph is downscaled to a short side of 256 (Lanczos, as tools/build_corpus.py does)
and its long side centre-cropped to at most 320 (repository size), stored as uint8 in .npz.
The `erase` bundle's README says its wildlife photos were sharpened upstream; at 1060-1080 px
they are downscaled about 4.2x, which averages the halos away to well under a pixel.

Hold-out (decided before any training or evaluation on them): a photograph is validation when
the first byte of sha256("<bundle>/<path inside the bundle>") is below 26 (about 10 %); the
rest is training. The 34 wallpapers of tools/build_corpus.py stay training only (the shipped
prior saw them).

    python tools/build_corpus_gcompris.py      # data/corpus_gcompris.npz (train), data/corpus_val.npz (validation)

The images bundled with scikit-image (the evaluation set) and scikit-learn never enter.
"""
import argparse
import glob
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rcc import read_rcc  # noqa: E402

PACKAGE = "gcompris-qt-data"
BUNDLES = ["explore_monuments", "explore_world_animals", "explore_farm_animals", "explore_world_music", "erase"]
SHORT_SIDE = 256
LONG_SIDE_MAX = 320
VAL_BYTE = 26  # sha256 first byte < 26: 26/256 = 10.2 %


def parse_readme(text):
    """{file name: {Copyright, License, Source}} from GCompris' README stanzas."""
    out = {}
    for para in text.replace("\r", "").split("\n\n"):
        fields, files, key = {}, [], None
        for line in para.splitlines():
            if not line.strip():
                continue
            if ":" in line and not line.startswith((" ", "\t")) and line.split(":", 1)[0] in (
                "Copyright", "License", "Source", "Files", "Comments", "Comment"):
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "Files":
                    files += value.split()
                else:
                    fields[key] = value
            elif key == "Files":
                files += line.split()
            elif key:
                fields[key] = fields.get(key, "") + " " + line.strip()
        for f in files:
            out[f] = fields
    return out


def is_validation(ident):
    return hashlib.sha256(ident.encode()).digest()[0] < VAL_BYTE


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debs", default="build/debs")
    ap.add_argument("--out", default="data/corpus_gcompris.npz")
    ap.add_argument("--manifest", default="data/corpus_gcompris.json")
    ap.add_argument("--val-out", default="data/corpus_val.npz")
    ap.add_argument("--val-manifest", default="data/corpus_val.json")
    ap.add_argument("--sheet", default=None, help="also write a contact sheet (PNG) of every photograph taken")
    args = ap.parse_args()

    os.makedirs(args.debs, exist_ok=True)
    if not glob.glob(os.path.join(args.debs, f"{PACKAGE}_*.deb")):
        subprocess.run(["apt-get", "download", PACKAGE], cwd=args.debs, check=True)
    deb = sorted(glob.glob(os.path.join(args.debs, f"{PACKAGE}_*.deb")))[-1]
    version = os.path.basename(deb).split("_")[1].replace("%3a", ":")
    train, val, man_t, man_v, thumbs = {}, {}, [], [], []
    with tempfile.TemporaryDirectory() as root:
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        for bundle in BUNDLES:
            rcc_path = f"/usr/share/gcompris-qt/rcc/{bundle}.rcc"
            files = read_rcc(root + rcc_path)
            readmes = {p: b for p, b in files.items() if p.endswith("/README")}
            for path in sorted(files):
                if not path.lower().endswith((".webp", ".jpg", ".jpeg", ".png")):
                    continue
                # the README of the nearest enclosing folder that has one
                readme, rel = None, None
                for rp in sorted(readmes, key=len, reverse=True):
                    d = rp[: -len("README")]
                    if path.startswith(d):
                        readme, rel = rp, path[len(d):]
                        break
                if readme is None:
                    continue
                entry = parse_readme(readmes[readme].decode("utf-8", "replace")).get(rel)
                if not entry or not entry.get("License") or "wikimedia.org" not in entry.get("Source", ""):
                    continue
                im = Image.open(io.BytesIO(files[path])).convert("RGB")
                if min(im.size) < SHORT_SIDE:
                    continue
                scale = SHORT_SIDE / min(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
                w, h = im.size
                if max(w, h) > LONG_SIDE_MAX:
                    if w > h:
                        l = (w - LONG_SIDE_MAX) // 2
                        im = im.crop((l, 0, l + LONG_SIDE_MAX, h))
                    else:
                        t = (h - LONG_SIDE_MAX) // 2
                        im = im.crop((0, t, w, t + LONG_SIDE_MAX))
                ident = f"{bundle}/{path}"
                held = is_validation(ident)
                arrays, man = (val, man_v) if held else (train, man_t)
                key = f"{'val' if held else 'gc'}_{len(arrays):03d}"
                arrays[key] = np.asarray(im, dtype=np.uint8)
                man.append(dict(key=key, package=PACKAGE, version=version, file=rcc_path, bundle=bundle,
                                path=path, license=entry["License"], copyright=entry.get("Copyright", ""),
                                source=entry["Source"], comments=entry.get("Comments", entry.get("Comment", "")),
                                original_size=list(Image.open(io.BytesIO(files[path])).size[::-1]),
                                size=[im.height, im.width]))
                thumbs.append(im.resize((96, 96)))
    for arrays, man, out, mpath in ((train, man_t, args.out, args.manifest), (val, man_v, args.val_out, args.val_manifest)):
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        np.savez_compressed(out, **arrays)
        with open(mpath, "w") as f:
            json.dump(man, f, indent=1, ensure_ascii=False)
        print(f"{len(arrays)} photographs -> {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    if args.sheet:
        cols = 16
        sheet = Image.new("RGB", (cols * 96, -(-len(thumbs) // cols) * 96))
        for i, t in enumerate(thumbs):
            sheet.paste(t, ((i % cols) * 96, (i // cols) * 96))
        sheet.save(args.sheet)


if __name__ == "__main__":
    main()

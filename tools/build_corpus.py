#!/usr/bin/env python3
"""Assemble the training corpus of the default models from Debian's wallpaper packages.

Only photographs enter (the list below was picked by eye from contact sheets of every image
in the packages; abstract and rendered art is left out). Each photograph is downscaled so
that its short side is 256 pixels and stored as uint8 in one compressed .npz, with its source
package, path and license (read from the package's DEP-5 copyright file) in a JSON manifest.

    python tools/build_corpus.py --out data/corpus.npz --manifest data/corpus.json

Downloads the .deb files with `apt-get download` (the package registry is the only network
this project uses) unless --debs points at a folder that already has them. The images bundled
with scikit-image and scikit-learn never enter: scikit-image's are the evaluation set.
"""
import argparse
import fnmatch
import glob
import json
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None

# (package, path under /usr/share); a directory means "the largest image under it" (Plasma
# ships one wallpaper at several sizes).
PHOTOS = [
    ("lomiri-wallpapers-16.04", "backgrounds/Bridge_by_Sander_Klootwijk.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/Dragonfly_by_Bolly.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/Picture_0B_by_freespace.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/Picture_1A_by_freespace.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/Wine_by_Jakkub_Mede.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/free_by_Peter_Nerlich.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/friends_by_Aitzol_Berasategi.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/greentock_by_Peter_Nerlich.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/life_by_Aitzol_Berasategi.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/seeding_by_Clements_Engelhardt.jpg"),
    ("lomiri-wallpapers-16.04", "backgrounds/sunset_by_Aitzol_Berasategi.jpg"),
    ("lomiri-wallpapers-20.04", "backgrounds/Kleiber_by_Lukas_Baubkus.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/Aqua.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/Blinds.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/Dune.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/FreshFlower.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/Garden.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/GreenMeadow.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/LadyBird.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/RainDrops.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/Storm.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/TwoWings.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/Wood.jpg"),
    ("mate-backgrounds", "backgrounds/mate/nature/YellowFlower.jpg"),
    ("plasma-workspace-wallpapers", "wallpapers/BytheWater/contents/images"),
    ("plasma-workspace-wallpapers", "wallpapers/ColdRipple/contents/images"),
    ("plasma-workspace-wallpapers", "wallpapers/ColorfulCups/contents/images"),
    ("plasma-workspace-wallpapers", "wallpapers/EveningGlow/contents/images"),
    ("plasma-workspace-wallpapers", "wallpapers/FallenLeaf/contents/images"),
    ("plasma-workspace-wallpapers", "wallpapers/Grey/contents/images"),
    ("plasma-workspace-wallpapers", "wallpapers/OneStandsOut/contents/images"),
    ("plasma-workspace-wallpapers", "wallpapers/Path/contents/images"),
]

SHORT_SIDE = 256


def fetch_packages(debs, root):
    os.makedirs(debs, exist_ok=True)
    for pkg in sorted({p for p, _ in PHOTOS}):
        if not glob.glob(os.path.join(debs, f"{pkg}_*.deb")):
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True)
        deb = sorted(glob.glob(os.path.join(debs, f"{pkg}_*.deb")))[-1]
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(root, pkg)], check=True)


def package_version(debs, pkg):
    deb = os.path.basename(sorted(glob.glob(os.path.join(debs, f"{pkg}_*.deb")))[-1])
    return deb.split("_")[1].replace("%3a", ":")


def dep5_license(copyright_text, path):
    """License of `path` by DEP-5 rules: the last Files paragraph whose pattern matches."""
    found = None
    for para in copyright_text.split("\n\n"):
        fields = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip()
                fields[key] = value.strip()
        if "Files" not in fields or "License" not in fields:
            continue
        for pattern in fields["Files"].split():
            if pattern == "*" or fnmatch.fnmatch(path, "*" + pattern.lstrip("*")) or fnmatch.fnmatch(
                os.path.basename(path), os.path.basename(pattern)
            ) and pattern.endswith(os.path.basename(path)):
                found = (fields["License"].split()[0], fields.get("Copyright", "").strip())
    return found


def resolve(root, pkg, rel):
    full = os.path.join(root, pkg, "usr/share", rel)
    if os.path.isdir(full):
        files = [f for f in glob.glob(os.path.join(full, "*")) if f.lower().endswith((".jpg", ".png"))]
        full = max(files, key=os.path.getsize)
    return full


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debs", default="build/debs", help="folder of (or for) the .deb files")
    ap.add_argument("--out", default="data/corpus.npz")
    ap.add_argument("--manifest", default="data/corpus.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as root:
        fetch_packages(args.debs, root)
        arrays, manifest = {}, []
        for i, (pkg, rel) in enumerate(PHOTOS):
            path = resolve(root, pkg, rel)
            copyright_text = open(os.path.join(root, pkg, "usr/share/doc", pkg, "copyright")).read()
            lic = dep5_license(copyright_text, path)
            if lic is None:
                raise SystemExit(f"no license paragraph matches {path}")
            im = Image.open(path)
            im.draft("RGB", (im.width // 4, im.height // 4))
            im = im.convert("RGB")
            scale = SHORT_SIDE / min(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            arrays[f"img_{i:03d}"] = np.asarray(im, dtype=np.uint8)
            manifest.append(
                {
                    "key": f"img_{i:03d}",
                    "package": pkg,
                    "version": package_version(args.debs, pkg),
                    "file": "/usr/share/" + os.path.relpath(path, os.path.join(root, pkg, "usr/share")),
                    "license": lic[0],
                    "copyright": lic[1],
                    "size": [im.height, im.width],
                }
            )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    with open(args.manifest, "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(arrays)} photographs -> {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

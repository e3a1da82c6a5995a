#!/usr/bin/env python3
"""The evaluation photographs: scikit-image's colour photographs (never used in training),
downscaled so that the short side is 96 pixels (antialiased Lanczos) and centre-cropped to
64x64, the default prior's size. Writes assets/images/*.png.

    python tools/make_eval_images.py
"""
import os

import numpy as np
from PIL import Image
from skimage import data

# name -> (loader, credit and license as scikit-image's data module states them)
PHOTOS = {
    "astronaut": (data.astronaut, "Eileen Collins, NASA; no known copyright restrictions, public domain"),
    "chelsea": (data.chelsea, "Stefan van der Walt; CC0"),
    "coffee": (data.coffee, "Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0"),
    "rocket": (data.rocket, "SpaceX; released into the public domain"),
}
SHORT, SIDE = 96, 64


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "images")
    os.makedirs(out, exist_ok=True)
    for name, (load, _) in PHOTOS.items():
        im = Image.fromarray(np.asarray(load())[..., :3])
        s = SHORT / min(im.size)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
        left, top = (im.width - SIDE) // 2, (im.height - SIDE) // 2
        im.crop((left, top, left + SIDE, top + SIDE)).save(os.path.join(out, f"{name}.png"), optimize=True)
        print(name, im.size)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The validation photographs: 64x64 crops of scikit-learn's two sample photographs, which
neither the training corpus nor the evaluation set (scikit-image's photographs, assets/images)
contains. Settings of the solvers (EquiReg's weight and schedule, a retrained prior against the
shipped one) are chosen on these, so that docs/RESULTS.md stays an evaluation on images that
informed no choice.

    pip install scikit-learn pillow
    python tools/make_validation_images.py            # writes build/validation/*.png

The crops are square boxes of the originals (640x427) at two scales, downscaled with an
antialiased Lanczos filter. Not committed: both photographs are CC BY 2.0 (scikit-learn's
sklearn/datasets/images/README.txt: china.jpg by danielbuechele, flower.jpg by vultilion, on
Flickr), so they are regenerated from the installed package instead.
"""
import argparse
import os

from PIL import Image

# name -> (source file, box (left, top, right, bottom) in the 640x427 original)
CROPS = {
    "china-pagoda": ("china.jpg", (40, 20, 360, 340)),
    "china-trees": ("china.jpg", (340, 127, 640, 427)),
    "flower-dahlia": ("flower.jpg", (150, 70, 470, 390)),
    "flower-petals": ("flower.jpg", (240, 140, 400, 300)),
}
SIDE = 64


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="build/validation")
    args = ap.parse_args()
    import sklearn

    src = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    os.makedirs(args.out, exist_ok=True)
    for name, (file, box) in CROPS.items():
        im = Image.open(os.path.join(src, file)).convert("RGB").crop(box)
        im.resize((SIDE, SIDE), Image.LANCZOS).save(os.path.join(args.out, f"{name}.png"), optimize=True)
        print(name, file, box)


if __name__ == "__main__":
    main()

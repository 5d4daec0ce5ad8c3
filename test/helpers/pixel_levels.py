"""Print the pixel levels of rectangular regions of a DICOM image as JSON.

An independent decoder (pydicom 2.3 with Pillow for JPEG) for checking what
endocap writes. Usage: pixel_levels.py FILE x0,y0,x1,y1 [x0,y0,x1,y1 ...]
Each region prints min, max and mean over all samples of the decoded RGB
image.
"""
import json
import sys

import numpy
import pydicom
from pydicom.pixel_data_handlers.util import convert_color_space


def main():
    dataset = pydicom.dcmread(sys.argv[1])
    pixels = dataset.pixel_array
    photometric = dataset.PhotometricInterpretation
    # pydicom 2.3 returns baseline JPEG with YBR_FULL_422 as YCbCr samples
    # (measured on Debian's python3-pydicom 2.3.1), so convert to RGB here.
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        pixels = convert_color_space(pixels, "YBR_FULL", "RGB")
    regions = []
    for region in sys.argv[2:]:
        x0, y0, x1, y1 = (int(value) for value in region.split(","))
        block = pixels[y0:y1, x0:x1].astype(numpy.int32)
        regions.append({"min": int(block.min()), "max": int(block.max()), "mean": float(block.mean())})
    print(json.dumps({"photometric": photometric, "shape": list(pixels.shape), "regions": regions}))


if __name__ == "__main__":
    main()

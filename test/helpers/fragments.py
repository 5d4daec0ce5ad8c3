"""Print the encapsulated Pixel Data structure of a DICOM file as JSON.

An independent reader (pydicom 2.3) for checking what endocap writes and what
a PACS stores. Usage: fragments.py FILE [OUTPUT]. It prints the Basic Offset
Table length in bytes and the length of each fragment. With OUTPUT, it also
writes the fragments joined together there, for decoding with the ffmpeg CLI.
"""
import json
import sys

import pydicom
from pydicom.encaps import generate_pixel_data_fragment
from pydicom.filebase import DicomBytesIO


def main():
    dataset = pydicom.dcmread(sys.argv[1])
    stream = DicomBytesIO(dataset.PixelData)
    stream.is_little_endian = True
    group, element = stream.read_US(), stream.read_US()
    if (group, element) != (0xFFFE, 0xE000):
        raise SystemExit("Pixel Data does not start with an item: not encapsulated")
    offset_table_length = stream.read_UL()
    stream.seek(offset_table_length, 1)
    fragments = list(generate_pixel_data_fragment(stream))
    if len(sys.argv) > 2:
        with open(sys.argv[2], "wb") as output:
            for fragment in fragments:
                output.write(fragment)
    print(json.dumps({
        "transferSyntax": str(dataset.file_meta.TransferSyntaxUID),
        "offsetTableLength": offset_table_length,
        "fragments": [len(fragment) for fragment in fragments],
    }))


if __name__ == "__main__":
    main()

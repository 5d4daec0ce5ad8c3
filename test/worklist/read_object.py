"""Prints attributes of a DICOM file as JSON: decoded by pydicom, and the raw bytes of text values in hex.

Usage: read_object.py FILE
"""
import json
import sys

import pydicom

ds = pydicom.dcmread(sys.argv[1])
raw = pydicom.dcmread(sys.argv[1])


def value(dataset, keyword):
    item = dataset.get(keyword, '')
    return '' if item is None else str(item)


def raw_hex(dataset, tag):
    # The stored bytes before any decoding, without the trailing padding space.
    element = dataset.get_item(tag)
    if element is None or element.value is None:
        return ''
    return bytes(element.value).rstrip(b' ').hex()


request = {}
if 'RequestAttributesSequence' in ds and len(ds.RequestAttributesSequence) > 0:
    item = ds.RequestAttributesSequence[0]
    raw_item = raw.RequestAttributesSequence[0]
    request = {
        'RequestedProcedureID': value(item, 'RequestedProcedureID'),
        'ScheduledProcedureStepID': value(item, 'ScheduledProcedureStepID'),
        'ScheduledProcedureStepDescription': value(item, 'ScheduledProcedureStepDescription'),
        'ScheduledProcedureStepDescriptionHex': raw_hex(raw_item, 0x00400007),
        'AccessionNumber': value(item, 'AccessionNumber'),
    }

print(json.dumps({
    'SpecificCharacterSet': value(ds, 'SpecificCharacterSet'),
    'SOPClassUID': value(ds, 'SOPClassUID'),
    'SOPInstanceUID': value(ds, 'SOPInstanceUID'),
    'PatientName': value(ds, 'PatientName'),
    'PatientNameHex': raw_hex(raw, 0x00100010),
    'PatientID': value(ds, 'PatientID'),
    'PatientIDHex': raw_hex(raw, 0x00100020),
    'IssuerOfPatientID': value(ds, 'IssuerOfPatientID'),
    'PatientBirthDate': value(ds, 'PatientBirthDate'),
    'PatientSex': value(ds, 'PatientSex'),
    'AccessionNumber': value(ds, 'AccessionNumber'),
    'StudyInstanceUID': value(ds, 'StudyInstanceUID'),
    'SeriesInstanceUID': value(ds, 'SeriesInstanceUID'),
    'StudyDescription': value(ds, 'StudyDescription'),
    'ReferringPhysicianName': value(ds, 'ReferringPhysicianName'),
    'ReferencedMpps': value(ds.ReferencedPerformedProcedureStepSequence[0], 'ReferencedSOPInstanceUID') if 'ReferencedPerformedProcedureStepSequence' in ds else '',
    'Request': request,
}, ensure_ascii=False))

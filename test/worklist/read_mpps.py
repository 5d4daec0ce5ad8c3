"""Decodes an MPPS data set written by the test receiver and prints the checked attributes as JSON.

Usage: read_mpps.py FILE explicit|implicit
"""
import json
import sys
from io import BytesIO

from pydicom.filereader import read_dataset

with open(sys.argv[1], 'rb') as handle:
    data = handle.read()
ds = read_dataset(BytesIO(data), is_implicit_VR=sys.argv[2] == 'implicit', is_little_endian=True)
ds.decode()


def text(dataset, keyword):
    value = dataset.get(keyword, '')
    return '' if value is None else str(value)


scheduled = None
if 'ScheduledStepAttributesSequence' in ds and len(ds.ScheduledStepAttributesSequence) > 0:
    item = ds.ScheduledStepAttributesSequence[0]
    scheduled = {
        'StudyInstanceUID': text(item, 'StudyInstanceUID'),
        'AccessionNumber': text(item, 'AccessionNumber'),
        'ScheduledProcedureStepID': text(item, 'ScheduledProcedureStepID'),
        'ScheduledProcedureStepDescription': text(item, 'ScheduledProcedureStepDescription'),
    }

series = []
for item in ds.get('PerformedSeriesSequence', []):
    series.append({
        'SeriesInstanceUID': text(item, 'SeriesInstanceUID'),
        'References': [[str(ref.ReferencedSOPClassUID), str(ref.ReferencedSOPInstanceUID)] for ref in item.get('ReferencedImageSequence', [])],
    })

reason = None
if 'PerformedProcedureStepDiscontinuationReasonCodeSequence' in ds and len(ds.PerformedProcedureStepDiscontinuationReasonCodeSequence) > 0:
    reason = str(ds.PerformedProcedureStepDiscontinuationReasonCodeSequence[0].CodeValue)

print(json.dumps({
    'SpecificCharacterSet': text(ds, 'SpecificCharacterSet'),
    'PerformedProcedureStepStatus': text(ds, 'PerformedProcedureStepStatus'),
    'PerformedProcedureStepID': text(ds, 'PerformedProcedureStepID'),
    'PatientName': text(ds, 'PatientName'),
    'PatientID': text(ds, 'PatientID'),
    'PatientBirthDate': text(ds, 'PatientBirthDate'),
    'Modality': text(ds, 'Modality'),
    'ScheduledStep': scheduled,
    'PerformedSeries': series,
    'DiscontinuationReason': reason,
}, ensure_ascii=False))

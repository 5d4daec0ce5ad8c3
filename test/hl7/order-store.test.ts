import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { OrderStore } from '../../src/hl7/order-store.js';
import { createLogger } from '../../src/log.js';
import type { WorklistEntry } from '../../src/worklist/worklist-entry.js';

const entry = (accessionNumber: string, patientId: string): WorklistEntry => ({
  patientName: 'Test^Patient',
  patientId,
  issuerOfPatientId: 'HOSP-A',
  patientBirthDate: '',
  patientSex: '',
  accessionNumber,
  studyInstanceUid: '',
  referringPhysicianName: '',
  requestingPhysician: '',
  admissionId: '',
  requestedProcedureId: '',
  requestedProcedureDescription: '',
  requestedProcedureCodes: [],
  referencedStudies: [],
  step: { id: '', description: '', modality: 'ES', stationAeTitle: '', stationName: '', location: '', startDate: '', startTime: '', performingPhysicianName: '', protocolCodes: [] },
});

t.test('order store removes orders past the retention', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-orders-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  let now = Date.parse('2026-12-04T10:00:00Z');
  const options = { stateDirectory: directory, retentionHours: 2, log: createLogger('silent'), clock: () => now };
  const store = await OrderStore.open(options);
  await store.place({ placerOrderNumber: 'P1', fillerOrderNumber: '' }, [entry('A1', 'ID1')]);
  now += 3_600_000;
  await store.place({ placerOrderNumber: 'P2', fillerOrderNumber: '' }, [entry('A2', 'ID2')]);
  now += 3_600_000 + 1;
  t.equal(await store.prune(), 1);
  t.same(store.entries.map((kept) => kept.accessionNumber), ['A2']);
  const reopened = await OrderStore.open(options);
  t.same(reopened.entries.map((kept) => kept.accessionNumber), ['A2'], 'the removal is on disk');
});

t.test('order store replaces an order placed again and moves aside an unreadable file', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-orders-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const options = { stateDirectory: directory, retentionHours: 24, log: createLogger('silent') };
  const store = await OrderStore.open(options);
  await store.place({ placerOrderNumber: 'P1', fillerOrderNumber: 'F1' }, [entry('A1', 'ID1')]);
  const again = await store.place({ placerOrderNumber: '', fillerOrderNumber: 'F1' }, [entry('A1B', 'ID1')]);
  t.equal(again.replaced, 1, 'same filler order number');
  t.same(store.entries.map((kept) => kept.accessionNumber), ['A1B']);

  await writeFile(path.join(directory, 'hl7-orders.json'), '{"formatVersion": 1, "orders": [');
  const recovered = await OrderStore.open(options);
  t.same(recovered.entries, []);
  t.ok((await readdir(directory)).some((name) => name.startsWith('hl7-orders.json.invalid-')));
});

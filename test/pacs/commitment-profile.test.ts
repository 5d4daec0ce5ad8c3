import t from 'tap';
import { stringify } from 'yaml';
import { parseProfile, ProfileError } from '../../src/profile/load-profile.js';
import { dicomDestinations } from '../../src/profile/schema.js';

function profileText(extra: { storageCommitment?: unknown; commitmentListener?: unknown }): string {
  const profile: Record<string, unknown> = {
    formatVersion: 1,
    station: { aeTitle: 'ENDOCAP', stationName: 'TOWER', uidRoot: '1.2.826.0.1.3680043.10.1437' },
    video: { source: { kind: 'simulator' } },
    footswitch: { kind: 'none' },
    destinations: [{ name: 'pacs', host: '192.0.2.10', port: 104, calledAeTitle: 'PACS', ...(extra.storageCommitment ? { storageCommitment: extra.storageCommitment } : {}) }],
    spool: { directory: '/tmp/endocap-test-spool' },
    stateDirectory: '/tmp/endocap-test-state',
  };
  if (extra.commitmentListener) profile.commitmentListener = extra.commitmentListener;
  return stringify(profile);
}

function problems(text: string): string[] {
  try {
    parseProfile(text, 'box.yaml');
  } catch (error) {
    if (error instanceof ProfileError) return error.message.split('\n');
    throw error;
  }
  return [];
}

const listener = { host: '192.0.2.20', port: 11113, allowedPeers: [{ aeTitle: 'PACS', host: '192.0.2.10' }] };

t.test('commitment profile fills defaults', async (t) => {
  const profile = parseProfile(profileText({ storageCommitment: { enabled: true }, commitmentListener: listener }), 'box.yaml');
  t.same(dicomDestinations(profile)[0]?.storageCommitment, {
    enabled: true,
    batchSize: 50,
    requestDelayMs: 5_000,
    resultTimeoutMs: 600_000,
    reportWaitMs: 1_000,
    unsupportedRetryMs: 3_600_000,
  });
  t.same(profile.commitmentListener, listener, 'aeTitle stays absent: the daemon uses station.aeTitle');
});

t.test('commitment profile needs listener', async (t) => {
  t.same(problems(profileText({ storageCommitment: { enabled: true } })), [
    'box.yaml: commitmentListener: expected a commitmentListener section (host, port, allowedPeers), because destination "pacs" enables storageCommitment, got nothing',
  ]);
  t.same(problems(profileText({ storageCommitment: { enabled: false } })), [], 'a disabled commitment needs no listener');
});

t.test('commitment profile rejects bad listener', async (t) => {
  const text = profileText({
    storageCommitment: { enabled: true, batchSize: 0 },
    commitmentListener: { host: 'endocap.local', port: 11113, allowedPeers: [{ aeTitle: 'PACS', host: 'pacs.example' }], extra: 1 },
  });
  t.same(problems(text), [
    'box.yaml: destinations.0.storageCommitment.batchSize: expected a number at least 1, got 0',
    'box.yaml: commitmentListener.host: expected IP address such as 192.0.2.10, not a host name, got "endocap.local"',
    'box.yaml: commitmentListener.allowedPeers.0.host: expected IP address such as 192.0.2.10, not a host name, got "pacs.example"',
    'box.yaml: commitmentListener: unknown key "extra"; remove it or check the spelling',
  ]);
  t.same(problems(profileText({ storageCommitment: { enabled: true }, commitmentListener: { ...listener, allowedPeers: [] } })), [
    'box.yaml: commitmentListener.allowedPeers: expected at least 1 items, got a list of 0',
  ]);
});

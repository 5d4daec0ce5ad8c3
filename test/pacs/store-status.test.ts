import t from 'tap';
import { classifyStoreStatus } from '../../src/pacs/store-status.js';

const cases: Array<[number, string]> = [
  [0x0000, 'stored'],
  [0xb000, 'warning'],
  [0xb006, 'warning'],
  [0xb007, 'warning'],
  [0x0111, 'warning'],
  [0xa700, 'transient'],
  [0xa7ff, 'transient'],
  [0x0213, 'transient'],
  [0xa900, 'permanent'],
  [0xc000, 'permanent'],
  [0xcfff, 'permanent'],
  [0x0110, 'permanent'],
  [0x0122, 'permanent'],
  [0x1234, 'permanent'],
];

t.test('store status classification', async (t) => {
  for (const [status, outcome] of cases) {
    t.equal(classifyStoreStatus(status).outcome, outcome, `0x${status.toString(16).padStart(4, '0')} is ${outcome}`);
  }
});

t.test('store status reason names the code', async (t) => {
  t.match(classifyStoreStatus(0xa700).reason, /0xA700/);
  t.match(classifyStoreStatus(0xc000).reason, /cannot understand \(status 0xC000\)/);
});

import t from 'tap';
import { ConnectionHistory } from '../../src/telemetry/flapping.js';

t.test('connection history flags flapping and forgets old connections', async (t) => {
  let now = 0;
  const history = new ConnectionHistory({ windowMs: 60_000, threshold: 3, now: () => now });
  history.recordConnect();
  now += 10_000;
  history.recordConnect();
  t.equal(history.flapping, false, 'two connections are not flapping');
  now += 10_000;
  history.recordConnect();
  t.equal(history.flapping, true, 'three within the window are');
  t.equal(history.recentConnects, 3);
  now += 50_001;
  t.equal(history.recentConnects, 1, 'connections older than the window are forgotten');
  t.equal(history.flapping, false);
  t.equal(history.connectCount, 3, 'the total keeps counting');
});

/**
 * The fill lease (store-lease.ts under fill-coordinator.ts's prefix) raced on real stores: 8 contenders, each with
 * its own driver (its own connections, as separate replicas have), take the lease of one digest at once.
 * On azurite (If-None-Match: * excludes concurrent creators, as Azure does) and on a filesystem directory (link(2)):
 * exactly one holds it, every other one sees the holder's address; the holder's release lets exactly one of the
 * others take it, and so does its expiry when the holder stops renewing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FILL_LEASE_PREFIX } from '../../lib/cache/fill-coordinator';
import { createStorage, type StorageDriver } from '../../lib/cache/storage';
import { StoreLease } from '../../lib/cache/store-lease';
import { startAzurite, type AzuriteServer } from '../support/storage-servers';

const CONTENDERS = 8;
const ROUNDS = 10;
/** Azure's Last-Modified has 1 s resolution: the expiry leaves room for it and for a loaded machine. */
const EXPIRE_MS = 4000;

describe.each(['azure', 'filesystem'] as const)('fill lease on %s: one holder of 8 contenders', (kind) => {
  let azurite: AzuriteServer | undefined;
  let root: string | undefined;
  let drivers: StorageDriver[] = [];

  beforeAll(async () => {
    if (kind === 'azure') {
      azurite = await startAzurite();
      const options = await azurite.container('leases', '/site');
      drivers = await Promise.all(Array.from({ length: CONTENDERS }, () => createStorage({ kind: 'azure', options })));
    } else {
      const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-fill-lease-'));
      root = dir;
      drivers = await Promise.all(
        Array.from({ length: CONTENDERS }, () => createStorage({ kind: 'filesystem', options: { rootdirectory: dir } })),
      );
    }
  }, 60_000);

  afterAll(async () => {
    await Promise.all(drivers.map((d) => d.close?.()));
    await azurite?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const leasesOf = (digest: string) =>
    drivers.map(
      (driver, i) =>
        new StoreLease(driver, {
          prefix: `${FILL_LEASE_PREFIX}sha256-${digest}.`,
          expireMs: EXPIRE_MS,
          info: { address: `10.0.0.${i}:5002` },
        }),
    );

  test(`${ROUNDS} digests raced by ${CONTENDERS} contenders: one holder each, named to the others`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const leases = leasesOf(`${round}`.padStart(64, 'a'));
      const held = await Promise.all(leases.map((l) => l.tick()));
      expect(held.filter(Boolean)).toHaveLength(1);
      const winner = held.indexOf(true);
      const seen = await Promise.all(leases.filter((_, i) => i !== winner).map((l) => l.liveHolder()));
      for (const holder of seen) expect(holder?.info.address).toBe(`10.0.0.${winner}:5002`);

      // Released (the fill is over): exactly one of the others gets it at the next race.
      await leases[winner].release();
      const again = await Promise.all(leases.map((l, i) => (i === winner ? Promise.resolve(false) : l.tick())));
      expect(again.filter(Boolean)).toHaveLength(1);
      await leases[again.indexOf(true)].release();
    }
  }, 120_000);

  test('a holder that stops renewing is taken over by exactly one contender once its lease expires', async () => {
    const leases = leasesOf('b'.repeat(64));
    const held = await Promise.all(leases.map((l) => l.tick()));
    const dead = held.indexOf(true);
    const others = leases.filter((_, i) => i !== dead);
    expect(await Promise.all(others.map((l) => l.tick()))).toEqual(others.map(() => false)); // live: nobody takes it
    await new Promise((r) => setTimeout(r, EXPIRE_MS + 500));
    const taken = await Promise.all(others.map((l) => l.tick()));
    expect(taken.filter(Boolean)).toHaveLength(1);
    const successor = others[taken.indexOf(true)];
    expect((await leases[dead].liveHolder())?.holder).toBe(successor.holder);
    expect(await leases[dead].tick()).toBe(false); // the dead holder, back, finds its lease gone
    await successor.release();
  }, 60_000);
});

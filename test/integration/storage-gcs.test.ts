/**
 * The GCS driver (@google-cloud/storage) against test/fixtures/gcs-json-api.ts, a loopback server of the documented
 * GCS JSON API v1 subset the SDK calls. No GCS server or emulator runs here (firebase-tools' emulator downloads a JAR
 * at start, fake-gcs-server is not packaged), so this checks the driver against Google's published protocol, not
 * against Google's implementation. Auth is real: the SDK signs RS256 JWTs with a test service-account key file,
 * and the fixture verifies them.
 */
import { generateKeyPairSync, KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GcsOptions } from '../../lib/config';
import { createStorage } from '../../lib/cache/storage';
import { GcsJsonApiServer } from '../fixtures/gcs-json-api';
import { describeConformance } from '../support/storage-conformance';
import { sleep, waitFor } from '../../harness/tools';

const BUCKET = 'dtr-cache';
const CLIENT_EMAIL = 'dtr-cache-test@dtr-cache-test.iam.gserviceaccount.com';
const CHUNK = 4 * 1024 * 1024;

/**
 * A service-account key file as the Cloud console issues it. `universe_domain` is not googleapis.com, so the SDK
 * authorizes each request with a JWT it signs itself instead of exchanging one at Google's fixed token URL.
 */
async function serviceAccount(dir: string, name: string): Promise<{ keyfile: string; publicKey: KeyObject }> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyfile = join(dir, `${name}.json`);
  await fs.writeFile(
    keyfile,
    JSON.stringify({
      type: 'service_account',
      project_id: 'dtr-cache-test',
      private_key_id: name,
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      client_email: CLIENT_EMAIL,
      client_id: '1',
      token_uri: 'https://oauth2.dtr-cache.test/token',
      universe_domain: 'dtr-cache.test',
    }),
    { mode: 0o600 },
  );
  return { keyfile, publicKey };
}

async function start(): Promise<{ api: GcsJsonApiServer; dir: string; keyfile: string; options: GcsOptions }> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'gcs-test-'));
  const { keyfile, publicKey } = await serviceAccount(dir, 'test-key');
  const api = await GcsJsonApiServer.start({ bucket: BUCKET, clientEmail: CLIENT_EMAIL, publicKey });
  const options: GcsOptions = { bucket: BUCKET, keyfile, rootdirectory: '/cache', chunksize: CHUNK, endpoint: api.url };
  return { api, dir, keyfile, options };
}

let fixture: GcsJsonApiServer | undefined;

describeConformance('gcs (JSON API v1 fixture)', async () => {
  const { api, dir, options } = await start();
  fixture = api;
  const driver = await createStorage({ kind: 'gcs', options });
  return {
    driver,
    partSize: CHUNK,
    leftovers: async () => api.names('cache/_uploads/').length,
    partsOf: async (key) => api.object(`cache/${key}`)?.uploadRequests ?? 0,
    teardown: async () => {
      console.log(`gcs fixture: ${JSON.stringify(api.stats)}, ${api.openSessions()} sessions left open`);
      await api.stop();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
});

describe('gcs driver against the fixture: protocol and auth', () => {
  let api: GcsJsonApiServer;
  let dir: string;
  let options: GcsOptions;
  beforeAll(async () => {
    ({ api, dir, options } = await start());
  });
  afterAll(async () => {
    await api?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('a write of several chunks goes as one resumable session: 308 Resume Incomplete per chunk, one rewrite at commit', async () => {
    const driver = await createStorage({ kind: 'gcs', options });
    const before = { ...api.stats };
    const data = Buffer.alloc(2 * CHUNK + 1000, 7);
    const w = await driver.write('chunks/blob', data.length);
    w.stream.end(data);
    await w.commit();
    expect(api.stats.resumableSessions - before.resumableSessions).toBe(1);
    expect(api.stats.incompleteChunks - before.incompleteChunks).toBe(2);
    expect(api.stats.rewrites - before.rewrites).toBe(1);
    expect(api.object('cache/chunks/blob')).toMatchObject({ size: data.length, uploadRequests: 3 });
    expect(api.names('cache/_uploads/')).toEqual([]); // the temp object is gone after commit
    await driver.close?.();
  });

  test('a write aborted midway cancels its resumable session (DELETE, 499): no session nor temp object is left', async () => {
    const driver = await createStorage({ kind: 'gcs', options });
    const before = { ...api.stats };
    const w = await driver.write('aborted/blob');
    await new Promise<void>((resolve, reject) => w.stream.write(Buffer.alloc(CHUNK + 1000, 1), (err) => (err ? reject(err) : resolve())));
    await waitFor('the first chunk at the fixture', async () => api.stats.incompleteChunks > before.incompleteChunks);
    await w.abort();
    expect(api.stats.resumableSessions - before.resumableSessions).toBe(1);
    expect(api.stats.cancelledSessions - before.cancelledSessions).toBe(1);
    expect(api.openSessions()).toBe(0);
    expect(api.names('cache/')).not.toContain('cache/aborted/blob');
    expect(api.names('cache/_uploads/')).toEqual([]);
    await driver.close?.();
  });

  test('touch is a metadata PATCH read back as lastAccess; the object bytes are not rewritten', async () => {
    const driver = await createStorage({ kind: 'gcs', options });
    const w = await driver.write('touch/blob');
    w.stream.end(Buffer.from('x'));
    await w.commit();
    const generation = api.object('cache/touch/blob')!.generation;
    await sleep(20);
    await driver.touch('touch/blob');
    const stored = api.object('cache/touch/blob')!;
    expect(stored.generation).toBe(generation);
    expect(stored.metageneration).toBe(2);
    expect((await driver.stat('touch/blob'))!.lastAccess.toISOString()).toBe(stored.metadata!.lastaccess);
    await driver.close?.();
  });

  test('requests signed by another key are refused (401) and the driver reports a storage error', async () => {
    const other = await serviceAccount(dir, 'other-key');
    const driver = await createStorage({ kind: 'gcs', options: { ...options, keyfile: other.keyfile } });
    const rejected = api.stats.rejectedAuth;
    await expect(driver.probe()).rejects.toThrow(/probe/);
    expect(api.stats.rejectedAuth).toBeGreaterThan(rejected);
    await driver.close?.();
  });
});

// The conformance run was authorized throughout, and its aborted writes cancelled their resumable sessions.
afterAll(() => {
  expect(fixture?.stats.rejectedAuth ?? 0).toBe(0);
  expect(fixture?.openSessions() ?? 0).toBe(0);
});

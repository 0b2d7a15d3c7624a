import { networkInterfaces } from 'node:os';
import { advertisedAddress, isReplicaRequest, replicaHeaders } from '../../../lib/cache/replica-endpoint';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('replica request HMAC', () => {
  const now = 1_800_000_000_000;

  it('accepts a request signed with the same secret, digest and offset, within a minute', () => {
    expect(isReplicaRequest('s3cret', DIGEST, 42, replicaHeaders('s3cret', DIGEST, 42, now), now + 59_000)).toBe(true);
  });

  it.each([
    ['another secret', replicaHeaders('other', DIGEST, 0, now)],
    ['another offset', replicaHeaders('s3cret', DIGEST, 1, now)],
    ['another digest', replicaHeaders('s3cret', `sha256:${'b'.repeat(64)}`, 0, now)],
    ['a time more than a minute off', replicaHeaders('s3cret', DIGEST, 0, now - 61_000)],
    ['no headers', {}],
    ['a malformed MAC', { ...replicaHeaders('s3cret', DIGEST, 0, now), 'x-dtr-cache-replica-auth': 'zz' }],
  ])('refuses %s', (_what, headers) => {
    expect(isReplicaRequest('s3cret', DIGEST, 0, headers, now)).toBe(false);
  });
});

describe('advertisedAddress', () => {
  it.each([
    ['10.0.0.5', undefined, '10.0.0.5:41000'],
    ['cache-1:5002', undefined, 'cache-1:5002'],
    ['fd00::5', undefined, '[fd00::5]:41000'],
    ['[fd00::5]:5002', undefined, '[fd00::5]:5002'],
    [undefined, '10.1.2.3', '10.1.2.3:41000'],
    [undefined, '::1', '[::1]:41000'],
  ])('advertise %s, listening on %s: %s', (advertise, host, expected) => {
    expect(advertisedAddress(advertise, host, 41000)).toBe(expected);
  });

  it("listening on every interface: this machine's first non-loopback IPv4 address", () => {
    const ipv4 = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal);
    expect(advertisedAddress(undefined, '0.0.0.0', 41000)).toBe(`${ipv4?.address ?? '127.0.0.1'}:41000`);
  });
});

/** The Swift driver (v1 tempauth) against a Swift all-in-one from Debian's packages, started by the test. */
import { request } from 'undici';
import type { SwiftOptions } from '../../lib/config';
import { createStorage } from '../../lib/cache/storage';
import { describeConformance } from '../support/storage-conformance';
import { startSwift } from '../support/storage-servers';

describeConformance('swift (all-in-one, tempauth)', async () => {
  const swift = await startSwift();
  const options: SwiftOptions = {
    authurl: swift.authurl,
    username: `${swift.account}:${swift.user}`,
    password: swift.password,
    container: 'dtr-cache',
    prefix: '/cache',
  };
  const driver = await createStorage({ kind: 'swift', options });
  await driver.probe(); // authenticates and creates the container
  const auth = await fetch(swift.authurl, { headers: { 'x-auth-user': options.username, 'x-auth-key': swift.password } });
  const token = auth.headers.get('x-auth-token') as string;
  const storageUrl = auth.headers.get('x-storage-url') as string;
  return {
    driver,
    partSize: 1024 * 1024,
    createRace:
      'Swift checks If-None-Match: * on each object server before it writes, so concurrent PUTs of one new name can all pass (an existing object is refused with 412)',
    leftovers: async () => {
      const res = await request(`${storageUrl}/dtr-cache?format=json&prefix=cache/_uploads/`, { headers: { 'x-auth-token': token } });
      return res.statusCode === 200 ? ((await res.body.json()) as unknown[]).length : (await res.body.dump(), 0);
    },
    teardown: () => swift.stop(),
  };
});

/** The Azure driver against azurite (npm devDependency), started on loopback by the test. */
import { createStorage } from '../../lib/cache/storage';
import { describeConformance } from '../support/storage-conformance';
import { startAzurite } from '../support/storage-servers';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';

describeConformance('azure (azurite)', async () => {
  const azurite = await startAzurite();
  const options = await azurite.container('dtr-cache', '/cache');
  const container = new BlobServiceClient(
    azurite.serviceurl,
    new StorageSharedKeyCredential(azurite.accountname, azurite.accountkey),
  ).getContainerClient(options.container);
  const driver = await createStorage({ kind: 'azure', options });
  return {
    driver,
    partSize: 4 * 1024 * 1024,
    leftoversExpire: 'Azure keeps uncommitted blocks invisible and deletes them after 7 days; they cannot be removed sooner',
    partsOf: async (key) => (await container.getBlockBlobClient(`cache/${key}`).getBlockList('committed')).committedBlocks?.length ?? 0,
    teardown: () => azurite.stop(),
  };
});

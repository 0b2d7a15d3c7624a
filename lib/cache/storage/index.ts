/**
 * Creates the driver a config selects. Object-store drivers are imported lazily, so a cache on the
 * filesystem never loads a cloud SDK.
 */
import type { StorageSelection } from '../../config';
import type { StorageDriver } from './driver';
import { FilesystemDriver } from './filesystem';

export * from './driver';

export async function createStorage(selection: StorageSelection): Promise<StorageDriver> {
  switch (selection.kind) {
    case 'filesystem':
      return new FilesystemDriver(selection.options);
    case 's3':
      return (await import('./s3')).createS3Driver(selection.options);
    case 'azure':
      return (await import('./azure')).createAzureDriver(selection.options);
    case 'oss':
      return (await import('./oss')).createOssDriver(selection.options);
    case 'swift':
      return (await import('./swift')).createSwiftDriver(selection.options);
    case 'gcs':
      return (await import('./gcs')).createGcsDriver(selection.options);
    default:
      throw new Error(`storage.${(selection as StorageSelection).kind}: unknown driver; use filesystem, s3, azure, gcs, oss or swift`);
  }
}

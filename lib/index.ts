/** The construct library: what a platform team imports. The config schema comes along, for typed storage options. */
export * from './constructs';
export { renderConfig, loadConfig, validateConfig } from './config';
export type { CacheConfigInput, StorageKind } from './config';

export * from './schema';
export * from './storage-schema';
export * from './load';
export { parseDuration, parseSize } from './duration';

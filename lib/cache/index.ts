/** The cache server's public surface: what the CLI, the image and the tests use. */
export { createCacheServer, type CacheServer, type CacheServerOptions, type RouteHandler } from './server';
export { CacheEvents, type CacheEventMap, type CacheEventName } from './events';
export { createLogger, silentLogger, type Logger, type LogLevel } from './log';
export { blobKey, manifestKey, tagKey, parseRoute, parseDigest, isValidName, isValidTag, type Digest, type Route } from './reference';

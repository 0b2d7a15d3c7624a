/**
 * Alibaba Cloud OSS through its S3-compatible API: the registry's oss keys are mapped onto the S3 driver's
 * options, so OSS shares every line of the S3 driver (multipart completed only at commit, access markers).
 * The endpoint is `endpoint` when set, else `<region>[-internal].aliyuncs.com` as the registry derives it.
 * OSS serves buckets virtual-hosted only; an IP-literal endpoint (a test server) can only be path-style.
 */
import { isIP } from 'node:net';
import type { OssOptions, S3Options } from '../../config';
import type { ObjectStoreDriver } from './object-store';
import { createS3Driver } from './s3';

/** The S3 driver options that reach the OSS bucket `options` names. Pure. */
export function ossToS3Options(options: OssOptions): S3Options {
  const secure = options.secure ?? true;
  const host = options.endpoint ?? `${options.region}${options.internal ? '-internal' : ''}.aliyuncs.com`;
  const url = /^https?:\/\//.test(host) ? host : `${secure ? 'https' : 'http'}://${host}`;
  return {
    region: options.region,
    bucket: options.bucket,
    accesskey: options.accesskeyid,
    secretkey: options.accesskeysecret,
    regionendpoint: url,
    forcepathstyle: isIP(new URL(url).hostname.replace(/^\[|\]$/g, '')) !== 0,
    secure,
    encrypt: options.encrypt,
    chunksize: options.chunksize,
    rootdirectory: options.rootdirectory,
  };
}

export function createOssDriver(options: OssOptions): ObjectStoreDriver {
  return createS3Driver(ossToS3Options(options), 'oss');
}

import { parseArgs } from 'node:util';
import { readFile } from 'node:fs/promises';
import { CREDENTIAL_FLAGS, readCredentials } from '../../lib/cli/credentials';
import { UsageError } from '../../lib/cli/errors';
import { baseUrl, intFlag } from '../../lib/cli/flags';
import { type ImageRef, imageLines, parseImageRef, parsePlatform } from '../../lib/cli/image-ref';
import { reporterFor, summaryTable } from '../../lib/cli/progress';
import { RegistryClient } from '../../lib/cli/registry-client';
import { makeAgent, TLS_FLAGS } from '../../lib/cli/transport';
import { warmImages } from '../../lib/cli/warm';
import { Command } from './command';

export const command: Command = {
  usage: `Usage: dtr-cache warm --cache <url> [options] <image…>
       dtr-cache warm --cache <url> --file images.txt

Pulls the manifests and blobs of each image through the cache (every platform of a multi-arch index, or only
--platform), checking each blob's sha256 while discarding it. Images are repo/name:tag or repo/name@sha256:…,
optionally prefixed by the cache's own host. A failing image does not stop the others.

Options:
  --cache <url>          the cache, e.g. https://cache-asia.example.com (required)
  --file <path>          read images from a file, one per line ("#" comments allowed)
  --platform <os/arch>   only this platform of multi-arch images, e.g. linux/amd64
  --concurrency <n>      blobs pulled at once, 1-64 (default 4)
  --dtr <url>            DTR's token realm origin, e.g. https://dtr.example.com: it may also receive the credentials
  --username <user>      user for the registry's token or basic auth (default: $DTR_USERNAME)
  --password-env <VAR>   environment variable holding the password or token (default: DTR_PASSWORD)
  --ca <file>            PEM CA certificate of the cache (and of DTR)
  --insecure             do not verify TLS certificates
  -h, --help             this help

Credentials go only to the cache and to token realms at the cache's or --dtr's origin (scheme, host and port).
Progress: bars on a terminal, plain lines otherwise (stderr); the summary table goes to stdout.
Exit codes: 0 every image warmed, 1 at least one image failed, 2 bad flags or image names.`,
  run: warm,
};

async function warm(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: true,
    options: {
      cache: { type: 'string' },
      file: { type: 'string' },
      platform: { type: 'string' },
      concurrency: { type: 'string' },
      dtr: { type: 'string' },
      ...CREDENTIAL_FLAGS,
      ...TLS_FLAGS,
    },
  });
  const cache = baseUrl('--cache', values.cache);
  const dtr = values.dtr ? baseUrl('--dtr', values.dtr) : undefined;
  const concurrency = intFlag('--concurrency', values.concurrency, 4, 1, 64);
  const platform = values.platform ? parsePlatform(values.platform) : undefined;
  const images = await imagesToWarm(positionals, values.file, cache);
  const credentials = readCredentials(values, process.env);
  const agent = makeAgent(values);
  const reporter = reporterFor(process.stderr);
  try {
    const client = new RegistryClient(cache, { credentials, dispatcher: agent, trustedRealms: dtr ? [dtr] : [] });
    const results = await warmImages({ client, images, platform, concurrency, reporter });
    reporter.close();
    process.stdout.write(summaryTable(results));
    return results.some((r) => r.error) ? 1 : 0;
  } finally {
    reporter.close();
    await agent.close();
  }
}

/** The images named after the flags and in `file`, one each (the same repository and reference given twice is one). */
async function imagesToWarm(positionals: readonly string[], file: string | undefined, cache: URL): Promise<ImageRef[]> {
  const texts = [...positionals];
  if (file) {
    const content = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`--file ${file}: cannot read it (${err.code ?? err.message})`);
    });
    texts.push(...imageLines(content));
  }
  if (texts.length === 0) throw new UsageError('no images: name them after the flags or pass --file <list>');
  return [...new Map(texts.map((t) => parseImageRef(t, cache)).map((i) => [`${i.repository}@${i.reference}`, i])).values()];
}

/**
 * A test-only stand-in for the kreuzwerker/docker Terraform provider (3.6.2), which cannot be downloaded on these
 * machines: a go-plugin server that the real `terraform` binary starts (through dev_overrides) and drives over
 * Terraform's plugin protocol 5, serving the provider's own schemas and doing on the Docker Engine API what the
 * provider does. See README.md in this folder.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ProviderService } from './provider';

const MAGIC_COOKIE_KEY = 'TF_PLUGIN_MAGIC_COOKIE';
const MAGIC_COOKIE = 'd602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2';

function load(file: string): grpc.GrpcObject {
  const definition = protoLoader.loadSync(join(__dirname, 'proto', file), {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition);
}

/** A self-signed certificate for localhost (what go-plugin's AutoMTLS expects of the server), made with openssl. */
function serverCertificate(): { cert: Buffer; key: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'tfprovider-docker-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost',
        '-addext',
        'keyUsage=digitalSignature,keyEncipherment,keyCertSign',
        '-addext',
        'extendedKeyUsage=serverAuth,clientAuth',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    return { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function main(): void {
  if (process.env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE) {
    process.stderr.write(
      'This binary is a plugin. These are not meant to be executed directly.\nPlease execute the program that consumes these plugins, which will load any plugins automatically\n',
    );
    process.exit(1);
  }
  const versions = (process.env.PLUGIN_PROTOCOL_VERSIONS ?? '5').split(',');
  if (!versions.includes('5')) {
    process.stderr.write(`the docker provider stand-in speaks plugin protocol 5; Terraform offers ${versions.join(',')}\n`);
    process.exit(1);
  }

  const server = new grpc.Server();
  const tfplugin5 = load('tfplugin5.proto').tfplugin5 as grpc.GrpcObject;
  const plugin = load('go-plugin.proto').plugin as grpc.GrpcObject;
  const health = ((load('health.proto').grpc as grpc.GrpcObject).health as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const open = new Set<grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>>();
  const shutdown = () => {
    for (const call of open) call.end();
    server.tryShutdown(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };

  server.addService((tfplugin5.Provider as grpc.ServiceClientConstructor).service, new ProviderService(shutdown).handlers());
  server.addService((health.Health as grpc.ServiceClientConstructor).service, {
    Check: (_call: unknown, done: grpc.sendUnaryData<unknown>) => done(null, { status: 'SERVING' }),
  });
  server.addService((plugin.GRPCController as grpc.ServiceClientConstructor).service, {
    Shutdown: (_call: unknown, done: grpc.sendUnaryData<unknown>) => {
      done(null, {});
      setImmediate(shutdown);
    },
  });
  server.addService((plugin.GRPCStdio as grpc.ServiceClientConstructor).service, {
    StreamStdio: (call: grpc.ServerWritableStream<unknown, unknown>) => open.add(call),
  });
  server.addService((plugin.GRPCBroker as grpc.ServiceClientConstructor).service, {
    StartStream: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      open.add(call);
      call.on('end', () => call.end());
    },
  });

  const clientCert = process.env.PLUGIN_CLIENT_CERT;
  let credentials = grpc.ServerCredentials.createInsecure();
  let certField = '';
  if (clientCert) {
    const { cert, key } = serverCertificate();
    credentials = grpc.ServerCredentials.createSsl(Buffer.from(clientCert), [{ private_key: key, cert_chain: cert }], true);
    certField = new X509Certificate(cert).raw.toString('base64').replace(/=+$/, '');
  }
  server.bindAsync('127.0.0.1:0', credentials, (err, port) => {
    if (err) {
      process.stderr.write(`cannot listen: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`1|5|tcp|127.0.0.1:${port}|grpc|${certField}\n`);
  });
  process.on('SIGTERM', shutdown);
  // Terraform interrupts the whole process group on Ctrl-C and stops providers through Stop/Shutdown.
  process.on('SIGINT', () => undefined);
}

main();

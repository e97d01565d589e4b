import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Paths of a certificate and its private key. */
export interface CertFiles {
  cert: string;
  key: string;
}

/**
 * Writes a one-day self-signed certificate for localhost into `dir` (cert.pem, key.pem) with openssl.
 * Clients pass it as their CA and connect with servername 'localhost'.
 */
export function makeSelfSignedCert(dir: string): CertFiles {
  const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost',
      '-days',
      '1',
      '-keyout',
      files.key,
      '-out',
      files.cert,
    ],
    { stdio: 'ignore' },
  );
  return files;
}

// Gets an OpTok from the development Authority (index.mjs) with the client-credentials grant,
// as a CI job would from its IdP, and prints it on stdout. Node's own modules only.
//
// With --dpop-key FILE the token request carries a DPoP proof (RFC 9449) signed by that P-256
// key (a PKCS#8 PEM; made, 0600, if FILE does not exist), so the OpToken is bound to it
// (`cnf.jkt`): for `senderConstraint: dpop`, and `registry-token test --dpop-key FILE`.
// Without it the OpTok is unbound: for `senderConstraint: none` and stock clients (`docker
// login` with the OpTok as password).
//
//   node scripts/oidc-authority/get-token.mjs --client acme-ci --dpop-key me.pem > optok
//   node scripts/oidc-authority/get-token.mjs --client acme-ci > optok
//
// --issuer (default http://127.0.0.1:8090) is the Authority; the client's secret is --secret,
// else the one clients.json beside this script gives it.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomUUID,
  sign,
} from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    issuer: { type: 'string', default: 'http://127.0.0.1:8090' },
    client: { type: 'string' },
    secret: { type: 'string' },
    clients: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), 'clients.json') },
    scope: { type: 'string', default: 'registry.token.issue' },
    'dpop-key': { type: 'string' },
  },
});

function fail(message) {
  console.error(`get-token: ${message}`);
  process.exit(1);
}

if (!opts.client) fail('--client ID is required (a client_id of clients.json)');
let secret = opts.secret;
if (secret === undefined) {
  const clients = JSON.parse(readFileSync(opts.clients, 'utf8'));
  secret = clients.find((c) => c.client_id === opts.client)?.client_secret;
  if (secret === undefined) fail(`no client ${opts.client} in ${opts.clients}; pass --secret`);
}

const b64u = (data) => Buffer.from(data).toString('base64url');

/** The P-256 key in `path`, made first if the file does not exist. */
function dpopKey(path) {
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }
  const key = createPrivateKey(readFileSync(path));
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    fail(`${path}: not a P-256 private key`);
  }
  return key;
}

/** An RFC 9449 proof for `POST url`, signed ES256 by `key`. */
function dpopProof(key, url) {
  const { kty, crv, x, y } = createPublicKey(key).export({ format: 'jwk' });
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } };
  const claims = { jti: randomUUID(), htm: 'POST', htu: url, iat: Math.floor(Date.now() / 1000) };
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64u(signature)}`;
}

const issuer = opts.issuer.replace(/\/$/, '');
const discovery = await fetch(`${issuer}/.well-known/openid-configuration`).catch((e) =>
  fail(`${issuer}: ${e.cause?.message ?? e.message}`),
);
if (!discovery.ok) fail(`${issuer}/.well-known/openid-configuration: HTTP ${discovery.status}`);
const endpoint = (await discovery.json()).token_endpoint;

const headers = {
  authorization: `Basic ${Buffer.from(
    `${encodeURIComponent(opts.client)}:${encodeURIComponent(secret)}`,
  ).toString('base64')}`,
  'content-type': 'application/x-www-form-urlencoded',
};
if (opts['dpop-key']) headers.dpop = dpopProof(dpopKey(opts['dpop-key']), endpoint);

const response = await fetch(endpoint, {
  method: 'POST',
  headers,
  body: new URLSearchParams({ grant_type: 'client_credentials', scope: opts.scope }),
});
const body = await response.json().catch(() => ({}));
if (!response.ok || !body.access_token) {
  fail(`POST ${endpoint}: HTTP ${response.status} ${body.error ?? ''} ${body.error_description ?? ''}`);
}
console.log(body.access_token);

// A development Authority for registry-token on panva's oidc-provider (an OpenID Certified
// implementation): the client_credentials grant, JWT access tokens (`typ: at+jwt`, audience
// `registry`, scope `registry.token.issue`) bound to the caller's DPoP key (`cnf.jkt`, RFC
// 9449) or to its TLS client certificate (`cnf.x5t#S256`, RFC 8705), and the plan and license
// claims of each client. NOT for production: clients and their secrets come from a file, keys
// are kept in a folder, and it serves plain http on loopback.
//
//   npm ci --prefix scripts/oidc-authority
//   node scripts/oidc-authority/index.mjs --port 8090 --dir target/demo/oidc \
//     --clients scripts/oidc-authority/clients.json
//
// clients.json: [{"client_id": "acme-ci", "client_secret": "...", "plan": "enterprise",
//                 "license": "LIC-0042"}, ...]; optional per client: "access_token_ttl"
// (seconds, default 600) and "mtls": true (its tokens are bound to the TLS client certificate
// it presents at the https token endpoint below; it must present one).
//
// Certificate-bound tokens: --tls-port PORT --tls-cert server.crt --tls-key server.key adds an
// https listener on 127.0.0.1:PORT serving the same provider; it asks every client for a
// certificate and takes any (the certificate is what the token is bound to, not a credential:
// clients still authenticate with their secret). Discovery names its token endpoint in
// `mtls_endpoint_aliases` (RFC 8705 section 5); discovery and the JWKS stay on plain http, so
// registry-token reads them as it reads any loopback Authority.
//
// --exit-on-stdin-close: stop when standard input reaches its end (for a parent, such as a test
// process, that may end without stopping it).
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '8090' },
    dir: { type: 'string', default: 'target/demo/oidc' },
    clients: { type: 'string' },
    'plan-claim': { type: 'string', default: 'stellaops:plan' },
    'license-claim': { type: 'string', default: 'stellaops:license' },
    'tls-port': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'exit-on-stdin-close': { type: 'boolean', default: false },
  },
});
if (!opts.clients) {
  console.error('--clients FILE is required');
  process.exit(2);
}
const tls = opts['tls-port'] !== undefined;
if (tls && !(opts['tls-cert'] && opts['tls-key'])) {
  console.error('--tls-port needs --tls-cert FILE and --tls-key FILE');
  process.exit(2);
}

/** The Authority's signing key (ES256), made once in --dir and kept. */
function signingKeys(dir) {
  const path = join(dir, 'jwks.json');
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'oidc-1', alg: 'ES256', use: 'sig' };
    writeFileSync(path, JSON.stringify({ keys: [jwk] }), { mode: 0o600 });
  }
  return JSON.parse(readFileSync(path, 'utf8'));
}

// The resource (RFC 8707) every token is for; its audience is what registry-token expects.
const RESOURCE = 'urn:registry-token:registry';

const clients = JSON.parse(readFileSync(opts.clients, 'utf8')).map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: 'ES256',
  plan: c.plan,
  license: c.license,
  access_token_ttl: c.access_token_ttl,
  ...(c.mtls ? { tls_client_certificate_bound_access_tokens: true } : {}),
}));
if (!tls && clients.some((c) => c.tls_client_certificate_bound_access_tokens)) {
  console.error('a client has "mtls": true: give --tls-port, --tls-cert and --tls-key');
  process.exit(2);
}

/** The certificate the client presented on this request's TLS connection, if any. */
function peerCertificate(ctx) {
  const { socket } = ctx;
  if (typeof socket.getPeerCertificate !== 'function') return undefined; // plain http
  const { raw } = socket.getPeerCertificate();
  return raw ? new X509Certificate(raw) : undefined;
}

const issuer = `http://127.0.0.1:${opts.port}`;
const provider = new Provider(issuer, {
  clients,
  jwks: signingKeys(opts.dir),
  cookies: { keys: ['development only, never shipped'] },
  extraClientMetadata: { properties: ['plan', 'license', 'access_token_ttl'] },
  scopes: ['registry.token.issue'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    mTLS: {
      enabled: tls,
      certificateBoundAccessTokens: tls,
      getCertificate: peerCertificate,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: 'registry.token.issue',
        audience: 'registry',
        accessTokenTTL: client?.access_token_ttl ?? 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 600 },
  discovery: tls
    ? { mtls_endpoint_aliases: { token_endpoint: `https://127.0.0.1:${opts['tls-port']}/token` } }
    : {},
  // The plan and license of the client the token is issued to.
  async extraTokenClaims(ctx, token) {
    const client = await ctx.oidc.provider.Client.find(token.clientId);
    return {
      [opts['plan-claim']]: client?.plan,
      [opts['license-claim']]: client?.license,
    };
  },
});

createServer(provider.callback()).listen(Number(opts.port), '127.0.0.1', () => {
  console.log(`oidc-provider authority: issuer ${issuer}`);
});
if (tls) {
  const options = {
    cert: readFileSync(opts['tls-cert']),
    key: readFileSync(opts['tls-key']),
    requestCert: true,
    rejectUnauthorized: false,
  };
  createTlsServer(options, provider.callback()).listen(Number(opts['tls-port']), '127.0.0.1', () => {
    console.log(`oidc-provider authority: mTLS token endpoint https://127.0.0.1:${opts['tls-port']}/token`);
  });
}
if (opts['exit-on-stdin-close']) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

// A development Authority for registry-token on panva's oidc-provider (an OpenID Certified
// implementation): the client_credentials grant, JWT access tokens (`typ: at+jwt`, audience
// `registry`, scope `registry.token.issue`) bound to the caller's DPoP key (`cnf.jkt`, RFC
// 9449), and the plan and license claims of each client. NOT for production: clients and
// their secrets come from a file, keys are kept in a folder, and it serves plain http on
// loopback.
//
//   npm ci --prefix scripts/oidc-authority
//   node scripts/oidc-authority/index.mjs --port 8090 --dir target/demo/oidc \
//     --clients scripts/oidc-authority/clients.json
//
// clients.json: [{"client_id": "acme-ci", "client_secret": "...", "plan": "enterprise",
//                 "license": "LIC-0042"}, ...]
import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
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
  },
});
if (!opts.clients) {
  console.error('--clients FILE is required');
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
}));

const issuer = `http://127.0.0.1:${opts.port}`;
const provider = new Provider(issuer, {
  clients,
  jwks: signingKeys(opts.dir),
  cookies: { keys: ['development only, never shipped'] },
  extraClientMetadata: { properties: ['plan', 'license'] },
  scopes: ['registry.token.issue'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'registry.token.issue',
        audience: 'registry',
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
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

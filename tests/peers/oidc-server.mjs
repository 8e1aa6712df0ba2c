// A real OAuth 2.0 / OpenID Connect server (oidc-provider) for credwatch's integration tests.
//
//   node oidc-server.mjs PORT            options as JSON in $OIDC_TEST_OPTIONS
//
// Consent is automated: an authorization request logs in the account named by `login_hint`
// (default "user-1") and grants what was asked, unless login_hint is "deny", which answers
// access_denied as an owner clicking Cancel would. With the option `interactive`, oidc-provider's
// own sign-in and consent pages are shown instead, for a browser to click through. Test-only routes under /test/ act as the
// user would on the provider's own site. Prints "oidc-provider listening on PORT" when ready.

import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node oidc-server.mjs PORT');
  process.exit(2);
}
const options = JSON.parse(process.env.OIDC_TEST_OPTIONS || '{}');

// oidc-provider's bundled memory adapter keeps only the 1,000 most recently used entries: with a
// few hundred grants, an idle refresh token is silently evicted and answers invalid_grant. This
// one keeps everything until it expires.
const entries = new Map();
const grantMembers = new Map();
class TestAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  get(key) {
    const entry = entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, expiresIn) {
    entries.set(key, { value, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    this.set(key, payload, expiresIn);
    if (payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, new Set());
      grantMembers.get(payload.grantId).add(key);
    }
    if (payload.uid) this.set(`${this.model}:uid:${payload.uid}`, id, expiresIn);
    if (payload.userCode) this.set(`${this.model}:userCode:${payload.userCode}`, id, expiresIn);
  }

  async find(id) {
    return this.get(this.key(id));
  }

  async findByUid(uid) {
    const id = this.get(`${this.model}:uid:${uid}`);
    return id ? this.find(id) : undefined;
  }

  async findByUserCode(userCode) {
    const id = this.get(`${this.model}:userCode:${userCode}`);
    return id ? this.find(id) : undefined;
  }

  async consume(id) {
    const payload = this.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    entries.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const key of grantMembers.get(grantId) ?? []) entries.delete(key);
    grantMembers.delete(grantId);
  }
}
const issuer = `http://127.0.0.1:${port}`;
const grantsByAccount = new Map();

const provider = new Provider(issuer, {
  adapter: TestAdapter,
  clients: options.clients ?? [
    {
      client_id: 'credwatch',
      client_secret: 'credwatch-secret',
      redirect_uris: ['http://127.0.0.1/oauth/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  clockTolerance: 0,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: options.interactive === true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  // Rotation with reuse detection: presenting a rotated-away refresh token revokes the family.
  rotateRefreshToken: options.rotateRefreshToken ?? true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: options.ttl?.AccessToken ?? 3600,
    AuthorizationCode: 60,
    Grant: options.ttl?.Grant ?? 14 * 24 * 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: options.ttl?.RefreshToken ?? 14 * 24 * 3600,
    Session: 24 * 3600,
  },
  claims: { openid: ['sub'], email: ['email'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com` }),
  }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));

// Refresh-token grants answered, so a test can tell how many refreshes reached the provider.
let refreshes = 0;
provider.on('grant.success', (ctx) => {
  if (ctx.oidc.params?.grant_type === 'refresh_token') refreshes += 1;
});

provider.use(async (ctx, next) => {
  const interaction = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (interaction && ctx.method === 'GET' && options.interactive !== true) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const { prompt, params } = details;
    let result;
    if (params.login_hint === 'deny') {
      result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
    } else if (prompt.name === 'login') {
      result = { login: { accountId: params.login_hint || 'user-1' } };
    } else {
      const accountId = details.session.accountId;
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId, clientId: params.client_id });
      const missing = prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      if (!grantsByAccount.has(accountId)) grantsByAccount.set(accountId, new Set());
      grantsByAccount.get(accountId).add(grantId);
      result = { consent: { grantId } };
    }
    await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
    return;
  }
  if (ctx.path === '/test/refreshes' && ctx.method === 'GET') {
    ctx.body = { refreshes };
    return;
  }
  // The account removes the app on the provider's own site: every grant and token goes.
  const revoke = ctx.path.match(/^\/test\/accounts\/([^/]+)\/revoke-app$/);
  if (revoke && ctx.method === 'POST') {
    const accountId = decodeURIComponent(revoke[1]);
    let revoked = 0;
    for (const grantId of grantsByAccount.get(accountId) ?? []) {
      const grant = await provider.Grant.find(grantId);
      if (grant) await grant.destroy();
      await provider.RefreshToken.adapter.revokeByGrantId(grantId);
      await provider.AccessToken.adapter.revokeByGrantId(grantId);
      revoked += 1;
    }
    grantsByAccount.delete(accountId);
    ctx.body = { revoked };
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${port}`);
});

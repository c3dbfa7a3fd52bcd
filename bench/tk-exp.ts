import { Tiktoken } from 'js-tiktoken/lite';
import o200k from 'js-tiktoken/ranks/o200k_base';
import cl100k from 'js-tiktoken/ranks/cl100k_base';
import * as g200 from 'gpt-tokenizer/encoding/o200k_base';
import * as g100 from 'gpt-tokenizer/encoding/cl100k_base';
import { buildConversations } from '../src/replay/corpus.js';
const texts = (await buildConversations({ limit: 3000 })).conversations.flatMap((c) => c.messages.map((m) => m.content));
texts.push('<|endoftext|> hi <|im_start|>', '日本語のテキスト 🎉👨‍👩‍👧', 'a\u0000b');
console.log('messages', texts.length, 'chars', texts.reduce((s, t) => s + t.length, 0));
const opts = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };
for (const [name, ranks, g] of [['o200k', o200k, g200], ['cl100k', cl100k, g100]] as const) {
  const js = new Tiktoken(ranks);
  let t = performance.now(); let a = 0; const ja: number[] = [];
  for (const x of texts) { const n = js.encode(x, [], []).length; ja.push(n); a += n; }
  const tj = performance.now() - t;
  t = performance.now(); let b = 0; let diff = 0;
  texts.forEach((x, i) => { const n = g.countTokens(x, opts); b += n; if (n !== ja[i]) diff++; });
  const tg = performance.now() - t;
  t = performance.now(); for (const x of texts) g.countTokens(x, opts); const tg2 = performance.now() - t;
  t = performance.now(); for (const x of texts) js.encode(x, [], []); const tj2 = performance.now() - t;
  console.log(name, { tokens: a, g: b, diff, jsMs: tj.toFixed(0), jsMs2: tj2.toFixed(0), gMs: tg.toFixed(0), gMs2: tg2.toFixed(0) });
}

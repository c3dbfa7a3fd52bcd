// An agent loop whose chat history lives in memq: LangChain's RunnableWithMessageHistory over
// MemqChatMessageHistory. The model is a fake one that answers from a list, so this runs offline;
// put a real chat model in its place (e.g. ChatOpenAI from @langchain/openai) and nothing else
// changes.
//
//   npm run build && node examples/agent-loop.mjs
//
// Needs @langchain/core (an optional peer dependency of memq; a devDependency here). Environment
// as examples/service.mjs: REDIS_URL, REDIS_CLUSTER_NODES, MEMQ_MEMORIES_DIR, MEMQ_PROJECT,
// MEMQ_KEY_PREFIX, MEMQ_QUEUE_PREFIX, all optional.
import { fileURLToPath } from 'node:url';
import { ChatPromptTemplate, MessagesPlaceholder } from '@langchain/core/prompts';
import { RunnableWithMessageHistory } from '@langchain/core/runnables';
import { FakeListChatModel } from '@langchain/core/utils/testing';
import { connect } from 'memq';
import { MemqChatMessageHistory } from 'memq/langchain';

/** An environment variable, empty counting as unset (as memq reads its own). */
const env = (name) => process.env[name] || undefined;

const url = env('REDIS_URL') ?? 'redis://127.0.0.1:6379';
const nodes = env('REDIS_CLUSTER_NODES');
const memq = await connect({
  redis: nodes ? { url, clusterNodes: nodes.split(',') } : url,
  memories: env('MEMQ_MEMORIES_DIR') ?? fileURLToPath(new URL('../memories', import.meta.url)),
  project: env('MEMQ_PROJECT'),
  keyPrefix: env('MEMQ_KEY_PREFIX'),
  queuePrefix: env('MEMQ_QUEUE_PREFIX'),
  workers: true,
});

try {
  const model = new FakeListChatModel({
    responses: [
      'Sorry to hear that. What is the order number?',
      'Order 1042 ships tomorrow.',
      'You are welcome.',
    ],
  });
  const prompt = ChatPromptTemplate.fromMessages([
    ['system', 'You are a support agent.'],
    new MessagesPlaceholder('history'),
    ['human', '{question}'],
  ]);
  // One memq instance per LangChain session: resource customer-support, key support:<sessionId>.
  const historyOf = (sessionId) =>
    new MemqChatMessageHistory({
      client: memq,
      resource: 'customer-support',
      key: `support:${sessionId}`,
    });
  const agent = new RunnableWithMessageHistory({
    runnable: prompt.pipe(model),
    getMessageHistory: historyOf,
    inputMessagesKey: 'question',
    historyMessagesKey: 'history',
  });

  const sessionId = 'agent-example';
  const questions = [
    'My order is late, mail me at jane.doe@example.com',
    'It is order 1042',
    'Thanks!',
  ];
  for (const [turn, question] of questions.entries()) {
    // Each turn reads the history from memq, calls the model, and stores the question and the
    // answer in memq (committed before invoke resolves).
    let seen = 0;
    const answer = await agent.invoke(
      { question },
      {
        configurable: { sessionId },
        callbacks: [{ handleChatModelStart: (_llm, prompts) => void (seen = prompts[0].length) }],
      },
    );
    console.log(`turn ${turn + 1}: the model saw ${seen} messages`);
    console.log(`  user:  ${question}`);
    console.log(`  agent: ${answer.content}`);
  }

  // What memq returns for the session: the turns in order, the e-mail address redacted before it
  // was stored (the resource's privacy policy). After a flush, the rolling summary would come
  // first as a system message.
  const history = historyOf(sessionId);
  const messages = await history.getMessages();
  console.log(`history of support:${sessionId} (${messages.length} messages):`);
  for (const message of messages) console.log(`  ${message.type}: ${message.content}`);

  // Remove the session: clear() empties it (the history API); delete() removes the instance.
  await history.clear();
  await memq.waitFor(await memq.delete({ resource: 'customer-support', key: history.key }));
  console.log(`deleted support:${sessionId}`);
} finally {
  await memq.close();
}

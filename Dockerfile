# memq runs TypeScript directly through tsx (a runtime dependency); no build step.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
# memq listens on 127.0.0.1 by default; inside a container that would be unreachable through a
# published port, so the image listens on every interface and the port mapping decides exposure.
ENV HOST=0.0.0.0
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY queues ./queues
COPY processors ./processors
COPY memories ./memories
# memq keeps generated credentials (.memq/api-key, .memq/board-password) here when
# MEMQ_API_KEYS / MEMQ_BOARD_PASSWORD are not set; docker-compose.yml mounts a volume on it.
RUN mkdir -p /app/.memq && chown node:node /app/.memq
USER node
EXPOSE 3000
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/memq.js"]
CMD ["start"]

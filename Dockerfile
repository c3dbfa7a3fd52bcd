# memq runs TypeScript directly through tsx (a runtime dependency); no build step.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY queues ./queues
COPY processors ./processors
COPY memories ./memories
USER node
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/memq.js"]
CMD ["start"]

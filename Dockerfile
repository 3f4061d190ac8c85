# MediSync: one image for every service; the command picks it (gateway, appointment, prepare, …).
# Build stage: compile TypeScript with the dev dependencies.
FROM node:20-bookworm-slim AS build
# swagger-ui-dist depends on @scarf/scarf, whose install script reports usage unless told not to.
ENV SCARF_ANALYTICS=false
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY raft ./raft
RUN npm run build

# Final stage: production dependencies and the compiled code only, run as an unprivileged user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 SCARF_ANALYTICS=false
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 8080 50051 9401
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["gateway"]

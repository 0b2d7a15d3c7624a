# The DTR content cache server image: `dtr-cache serve --config /config.yml`, as the DTR cache image runs.
#   docker build -t registry.example.com/dtr-cache:0.1.0 .
# Without Docker Hub (CI): scripts/build-base-image.sh makes a FROM-scratch base from the host's node, then
#   docker build --build-arg BASE_IMAGE=127.0.0.1:5000/dtr-cache-base:local \
#                --build-arg BUILD_IMAGE=127.0.0.1:5000/dtr-cache-build-base:local .
# The final stage runs no RUN instruction, so BASE_IMAGE needs only node (no shell, no npm).
ARG BASE_IMAGE=node:20-bookworm-slim
ARG BUILD_IMAGE=${BASE_IMAGE}

# Production dependencies, exactly from the lockfile: this tree is what the final image gets.
FROM ${BUILD_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"]

# Compiles the TypeScript. Of the dev dependencies only the compiler and node's types are needed (jest, cdktf-cli and
# the other dev tools are not), so just those two are installed beside the tree, at the versions the lockfile pins.
FROM deps AS build
RUN ["node", "-e", "const p=require('./package-lock.json').packages,v=(n)=>n+'@'+p['node_modules/'+n].version;require('child_process').execFileSync('npm',['install','--prefix','/tools','--no-save','--no-package-lock','--ignore-scripts','--no-audit','--no-fund',v('typescript'),v('@types/node')],{stdio:'inherit'})"]
COPY tsconfig.json ./
COPY lib ./lib
COPY bin ./bin
RUN ["node", "/tools/node_modules/typescript/bin/tsc", "-p", "tsconfig.json", "--typeRoots", "/tools/node_modules/@types"]
# The cache's storage root, owned by the runtime user; a volume mounted there starts with this ownership.
RUN ["node", "-e", "require('fs').mkdirSync('/out/var/lib/registry', { recursive: true })"]

FROM ${BASE_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
COPY package.json ./
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist/lib/config ./dist/lib/config
COPY --from=build /src/dist/lib/cache ./dist/lib/cache
COPY --from=build /src/dist/lib/cli ./dist/lib/cli
COPY --from=build /src/dist/bin ./dist/bin
COPY --from=build --chown=10001:10001 /out/var/lib/registry /var/lib/registry
# Non-root; ports below 1024 still bind because Docker sets net.ipv4.ip_unprivileged_port_start=0 in containers.
USER 10001:10001
EXPOSE 443
# Exec form: the FROM-scratch base has no shell. Reads the port and scheme from /config.yml with the server's own
# config loader (REGISTRY_* overrides included), then asks the health endpoint on loopback.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["node", "-e", "const f=require('fs'),c=require('/app/dist/lib/config').loadConfig(f.readFileSync('/config.yml','utf8'),process.env,'/config.yml');if(!c.ok)process.exit(1);const h=c.config.http,port=Number(h.addr.slice(h.addr.lastIndexOf(':')+1));const r=require(h.tls?'https':'http').get({host:'127.0.0.1',port,path:'/healthz',rejectUnauthorized:false,timeout:4000},(s)=>{s.resume();process.exit(s.statusCode===200?0:1)});r.on('error',()=>process.exit(1));r.on('timeout',()=>process.exit(1))"]
# The server drains on SIGTERM itself (node as PID 1 gets no default signal handlers, so it must). One worker per
# CPU the container may use (its cgroup quota included), all on the config's port; a service's `args` replace CMD,
# e.g. ["--workers", "1"].
ENTRYPOINT ["node", "/app/dist/bin/dtr-cache.js", "serve", "--config", "/config.yml"]
CMD ["--workers", "auto"]

# realtime-gateway: the WebRTC relay for the OpenAI Realtime API.
#
#   docker build -t realtime-gateway .        (or, without a Docker engine: scripts/build-image)
#   docker run --rm -p 8080:8080 -p 40000-40100:40000-40100/udp \
#     -e GATEWAY_PUBLIC_IP=203.0.113.10 -e OPENAI_API_KEY -e GATEWAY_API_KEY realtime-gateway
#
# Configured entirely by environment variables (README "Configuration", deploy/README.md).
# Without OPENAI_API_KEY it runs on the built-in emulator.

# ---------------------------------------------------------------------------------------------
# Builder: turn the source and every runtime dependency into wheels. Only this stage talks to
# the package index; nothing from it reaches the final image but the wheels it leaves behind.
FROM python:3.12-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway

# A TLS-intercepting proxy in front of PyPI needs its CA: pass it as a build secret
# (`--secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt`) so it never lands in a layer.
# Without the secret, pip uses its own CA bundle.
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --wheel-dir /wheels . \
    && sha256sum /wheels/*.whl > /wheels.sha256

# ---------------------------------------------------------------------------------------------
# Runtime: a virtualenv with the gateway's wheel and its dependencies, installed offline from
# the builder's wheels (bind-mounted, so the wheel files themselves take no layer). pip leaves
# the venv afterwards: nothing installs at run time.
FROM python:3.12-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The wheels' checksums, copied (not mounted): a layer cache keys a RUN on its own text, not on
# what a bind mount holds (buildah 1.28 reused a stale install here), so this small COPY is what
# makes a changed wheel re-run the install below. It also records what the image contains.
COPY --from=builder /wheels.sha256 /opt/wheels.sha256

RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    sha256sum --check --quiet /opt/wheels.sha256 \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheels \
        /wheels/realtime_gateway-*.whl \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools \
    && groupadd --gid 10001 gateway \
    && useradd --uid 10001 --gid gateway --no-create-home --no-log-init \
        --home-dir /nonexistent --shell /usr/sbin/nologin gateway

# The demo page. Owned by root and read-only to the gateway user.
COPY web /app/web

# In a container the gateway must listen on every interface; the ICE port range is what
# `EXPOSE`/`-p` publishes and what a firewall opens. GATEWAY_PUBLIC_IP is deliberately unset:
# it is the host's address, known only where the container runs.
ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_ICE_PORT_RANGE=40000-40100 \
    GATEWAY_WEB_DIR=/app/web

EXPOSE 8080/tcp 40000-40100/udp

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /app

# SIGTERM starts the graceful drain: readiness turns false, live calls get up to
# GATEWAY_DRAIN_TIMEOUT seconds. Give the container at least that long to stop
# (`docker stop -t`, compose `stop_grace_period`, k8s `terminationGracePeriodSeconds`).
STOPSIGNAL SIGTERM

# Liveness only (/healthz); /readyz is false while draining or at capacity, which must not
# make an orchestrator restart the container. Python's urllib: the image has no curl.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8080') + '/healthz', timeout=2)"]

# Exec form: the gateway is PID 1 and receives SIGTERM itself.
ENTRYPOINT ["realtime-gateway"]
CMD ["serve"]

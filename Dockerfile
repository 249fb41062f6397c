# One image for every Cinderblock service; docker-compose.yml picks the service by command:
#   docker run cinderblock serve api|relay|projector|sagas|notifier|billing
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
COPY ops ./ops
# The notify extra: billing's oslo.messaging notifier (CINDERBLOCK_NOTIFICATION_TRANSPORT_URL).
RUN pip install .[notify] \
    && useradd --system --create-home --home-dir /home/cinderblock cinderblock \
    && mkdir -p /var/lib/cinderblock \
    && chown cinderblock:cinderblock /var/lib/cinderblock

# File-driver data; a named volume mounted here (the sagas service) starts with this ownership.
ENV CINDERBLOCK_DATA_DIR=/var/lib/cinderblock

USER cinderblock
WORKDIR /home/cinderblock
EXPOSE 8776

ENTRYPOINT ["cinderblock"]
CMD ["serve", "api"]

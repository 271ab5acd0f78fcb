# War Tiket Engine image: one image for every process of docs/deploy.md (granian for HTTP, daphne for
# WebSockets only, live_quota, the Celery worker and beat), all started by `python -m wartiket.serve ROLE`;
# docker-compose.yml runs one role per container, the default command runs them all in one
# container. PostgreSQL and Redis run as their own services, never inside this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# wartiket.serve: listen on every interface of the container (HTTP on PORT 8001, WebSockets on WS_PORT
# 8002), and keep Celery beat's disposable schedule where the app user may write.
ENV HOST=0.0.0.0 \
    CELERY_BEAT_SCHEDULE=/tmp/celerybeat-schedule

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. requirements.txt is what production runs;
# the embedded servers and plotting of `make run` / `make bench` are in requirements-dev.txt, not here.
COPY requirements.txt .
RUN pip install -r requirements.txt

# The code stays root-owned and read-only to the app user; only collectstatic's output folder is writable.
COPY . .
RUN useradd --system --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /app/staticfiles \
    && chown app:app /app/staticfiles

USER app
EXPOSE 8001 8002
CMD ["python", "-m", "wartiket.serve", "all"]

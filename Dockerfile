# War Tiket Engine image: one image for every process of docs/deploy.md (gunicorn for HTTP, daphne for
# WebSockets, live_quota, the Celery worker and beat); docker-compose.yml picks the command. PostgreSQL and Redis run as their own services, never inside this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

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
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "wartiket.asgi:application"]

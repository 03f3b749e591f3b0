# The production image: web (gunicorn), Celery worker and beat all run from it (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 ctms \
    && useradd --system --uid 10001 --gid ctms --create-home --home-dir /home/ctms \
        --shell /usr/sbin/nologin ctms

# The dependencies, pinned in pyproject.toml; this layer is rebuilt only when they change.
# pyproject declares no packages (packages = []): `pip install .` brings the dependencies,
# and the app itself runs from /app.
COPY pyproject.toml README.md /tmp/build/
RUN pip install /tmp/build && rm -rf /tmp/build

WORKDIR /app
COPY . .

# Static files hashed and compressed for WhiteNoise. The key is a build-time dummy: settings
# refuse to load without one when DEBUG is off; the real key comes from the environment.
RUN SECRET_KEY=collectstatic-at-build-time-only python manage.py collectstatic --noinput \
    && mkdir -p var/media \
    && chown -R ctms:ctms var

USER ctms
EXPOSE 8000
CMD ["gunicorn", "trialsite.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]

# PostgreSQL for the compose stack on a machine that cannot pull images (the test
# suite's, and any air-gapped host with a Debian mirror): Debian's postgresql-15 on
# the debootstrap base of scripts/build-images.sh, with the official image's
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB behaviour and its data directory.
#   docker build -t corral-postgres:offline -f postgres.Dockerfile .
#   CORRAL_POSTGRES_IMAGE=corral-postgres:offline docker-compose … up -d
ARG BASE=corral-base:bookworm
FROM ${BASE}
RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; \
    apt-get clean; rm -rf /var/lib/apt/lists/*; \
    mkdir -p /var/lib/postgresql/data /var/run/postgresql; \
    chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["/bin/sh", "/usr/local/bin/postgres-entrypoint.sh"]

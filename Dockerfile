# One image for the three services; the command chooses the service:
#   docker run IMAGE dispatch-center | station-worker | audit | topics | migrate | ...
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY swdispatch swdispatch
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
# demo/ is where the compose stack's init step leaves the demo credentials (a named volume
# takes this directory's owner).
RUN groupadd --gid 10001 swdispatch \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/swdispatch --create-home \
        --shell /usr/sbin/nologin swdispatch \
    && install -d -o swdispatch -g swdispatch /var/lib/swdispatch/demo /var/lib/swdispatch/audit
COPY --from=build /install /usr/local
# Listen on every interface inside the container; PYTHONUNBUFFERED keeps logs prompt.
ENV SWD_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/swdispatch
USER 10001:10001
EXPOSE 8001 8002 8003
ENTRYPOINT ["swdispatch"]
CMD ["--help"]

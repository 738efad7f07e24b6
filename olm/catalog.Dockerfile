# The Signet file-based catalog, served by opm. Build from the repository root:
#   docker build -f olm/catalog.Dockerfile -t ghcr.io/signet-dev/signet-catalog:latest .
# (No image can be built on the development machine; `make test` runs `opm validate olm/catalog`.)
FROM quay.io/operator-framework/opm:v1.65.0
ENTRYPOINT ["/bin/opm"]
CMD ["serve", "/configs", "--cache-dir=/tmp/cache"]
ADD olm/catalog /configs
RUN ["/bin/opm", "serve", "/configs", "--cache-dir=/tmp/cache", "--cache-only"]
LABEL operators.operatorframework.io.index.configs.v1=/configs

# The image the Helm chart runs (charts/tollway, values image.repository/tag).
# It cannot be built on our machines (no container engine there); the dev cluster runs the
# same `tollway` command on the host instead. Kept deliberately plain: one stage, the package
# and its dependencies from PyPI, an unprivileged user (UID 1337, as Istio's proxy).
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tollway ./tollway
RUN pip install --no-cache-dir . && rm -rf /src \
 && useradd --uid 1337 --no-create-home --shell /usr/sbin/nologin tollway
USER 1337:1337
WORKDIR /
ENTRYPOINT ["tollway"]
CMD ["control-plane", "--kubernetes"]

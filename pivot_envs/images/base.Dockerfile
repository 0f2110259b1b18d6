# The sandbox base image: a small Debian with the tools terminal tasks expect.
#
# Built by `python -m sandboxes.build` as pivotrl/sandbox-base:latest. BASE_IMAGE is
# debian:bookworm-slim when a registry is reachable; otherwise the builder passes a rootfs it made
# with debootstrap (pivotrl/rootfs-bookworm), which already contains these packages, so the apt step
# below is then almost a no-op. Either way the result has the same packages and layout.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Keep this list in sync with PACKAGES in pivot_envs/images/build.py (the debootstrap path installs it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bash coreutils python3 python3-pip python3-venv git jq gawk sed grep findutils diffutils \
      tar gzip bzip2 xz-utils zip unzip sqlite3 procps file make ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

# The host's CA bundle (copied into the build context by the builder; empty when the host has none).
# Where outbound HTTPS goes through an intercepting proxy, pip in a task's `RUN pip install ...`
# needs it to trust PyPI. Containers run without network at run time, so this only affects builds.
COPY host-ca-certificates.crt /usr/local/share/ca-certificates/pivotrl-host-ca.crt
RUN if [ -s /usr/local/share/ca-certificates/pivotrl-host-ca.crt ]; then update-ca-certificates; \
    else rm -f /usr/local/share/ca-certificates/pivotrl-host-ca.crt; fi

WORKDIR /app
# The backend starts containers with its own long-running command; this default keeps a plain
# `docker run -d` of the image alive too.
CMD ["sleep", "infinity"]

# One SWE repository image: a real PyPI project's source distribution under /testbed as a git repo
# with one base commit, and pytest installed from wheels fetched on the host (the build needs no
# network, and containers run without one). Built by `python -m sandboxes.swe` (sandboxes/swe/repos.py).
ARG BASE_IMAGE=pivotrl/sandbox-base:latest
FROM ${BASE_IMAGE}

COPY wheels/ /opt/pivotrl-wheels/
RUN python3 -m pip install -q --no-index --find-links /opt/pivotrl-wheels /opt/pivotrl-wheels/*.whl \
 && rm -rf /opt/pivotrl-wheels

# A fixed author and date make the base commit id a function of the sources alone, so every build
# of the same sdist has the same base_commit (SWE-bench instances name it).
ENV GIT_AUTHOR_NAME=pivotrl GIT_AUTHOR_EMAIL=pivotrl@localhost GIT_COMMITTER_NAME=pivotrl \
    GIT_COMMITTER_EMAIL=pivotrl@localhost GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" \
    GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
COPY source.tar.gz /tmp/source.tar.gz
RUN mkdir -p /testbed && tar -xzf /tmp/source.tar.gz -C /testbed --strip-components=1 --no-same-owner \
 && rm /tmp/source.tar.gz \
 && cd /testbed && git init -q -b main && git config --global --add safe.directory /testbed \
 && printf '__pycache__/\n*.pyc\n.pytest_cache/\n' >> .git/info/exclude \
 && git add -A && git commit -q -m "base: source distribution" \
 && git config --global user.name pivotrl && git config --global user.email pivotrl@localhost

ARG PYTHONPATH_EXTRA=""
ENV PYTHONPATH=${PYTHONPATH_EXTRA}
WORKDIR /testbed
CMD ["sleep", "infinity"]

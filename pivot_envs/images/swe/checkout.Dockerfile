# An image for a repository the user brings as a local git checkout (SWE-bench / SWE-Gym / SWE-smith
# instances): the tree of the instance's base commit under /testbed as a repository with that one
# commit (no history that could hold the fix), pytest installed from host-fetched wheels.
# Built by sandboxes.swe.repos.build_checkout_image, which makes testbed/ (its .git included).
ARG BASE_IMAGE=pivotrl/sandbox-base:latest
FROM ${BASE_IMAGE}

COPY wheels/ /opt/pivotrl-wheels/
RUN python3 -m pip install -q --no-index --find-links /opt/pivotrl-wheels /opt/pivotrl-wheels/*.whl \
 && rm -rf /opt/pivotrl-wheels
COPY testbed/ /testbed/
RUN git config --global --add safe.directory /testbed \
 && git config --global user.name pivotrl && git config --global user.email pivotrl@localhost
ENV GIT_AUTHOR_NAME=pivotrl GIT_AUTHOR_EMAIL=pivotrl@localhost GIT_COMMITTER_NAME=pivotrl \
    GIT_COMMITTER_EMAIL=pivotrl@localhost GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" \
    GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
WORKDIR /testbed
CMD ["sleep", "infinity"]

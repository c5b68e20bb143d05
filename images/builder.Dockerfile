# The kiln builder image: what the operator runs in every per-platform Job,
# and a drop-in for kaniko's executor image (`/kaniko/executor`).
#
# Built from a context directory prepared by images/build-context.sh (see
# images/README.md): `kiln` must be a statically linked binary, because with
# --isolation=inplace the image being built is unpacked over this image's own
# `/`, including any /lib a dynamic binary would load from. Only /kiln (and
# /kaniko, where the executor and the docker config live) are left alone, so
# the CA bundle lives below /kiln too: the registry clients read it when they
# are first used, after the base image has replaced /etc.
FROM scratch

COPY kiln /kiln/executor
# kaniko/executor in the context is a symbolic link to /kiln/executor; a
# directory COPY keeps it a link, so the image holds one copy of the binary.
COPY kaniko/ /kaniko/
COPY ca-certificates.crt /kiln/ssl/certs/ca-certificates.crt

# KILN_BUILDER_IMAGE=1 makes --isolation=inplace and --context=/workspace/
# the defaults, as kaniko's executor has them.
ENV KILN_BUILDER_IMAGE=1 \
    SSL_CERT_FILE=/kiln/ssl/certs/ca-certificates.crt \
    DOCKER_CONFIG=/kaniko/.docker/

WORKDIR /workspace
ENTRYPOINT ["/kiln/executor"]

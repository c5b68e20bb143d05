# The kiln operator image: one statically linked binary, CA certificates for
# the registries it publishes image indexes to, and an unprivileged user.
#
# Built from a context directory prepared by images/build-context.sh (see
# images/README.md).
FROM scratch

COPY kiln-operator /kiln-operator
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt

ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

# The uid/gid the chart's pod securityContext runs as (runAsNonRoot needs a
# numeric user to verify).
USER 65532:65532
ENTRYPOINT ["/kiln-operator"]
